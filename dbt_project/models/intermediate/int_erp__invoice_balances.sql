-- Each live ERP invoice as of the run's ds with what has been paid on it and what is still
-- outstanding, in the invoice currency and in the reporting currency (at the invoice date's rate).
with documents as (
    select * from {{ ref('int_erp__documents') }}
),

paid as (
    select
        invoice_id,
        count(*) as payment_count,
        sum(amount) as paid_amount,
        max(document_date) as last_payment_date
    from documents
    where document_type = 'payment'
    group by invoice_id
),

balances as (
    select
        i.invoice_id,
        i.order_id,
        i.customer_id,
        i.document_date as invoice_date,
        i.due_date,
        i.status as invoice_status,
        i.currency_code,
        i.amount,
        i.amount_reporting,
        i.source_rate,
        i.reporting_rate,
        i.reporting_currency,
        coalesce(p.payment_count, 0) as payment_count,
        coalesce(p.paid_amount, 0) as paid_amount,
        p.last_payment_date,
        i.amount - coalesce(p.paid_amount, 0) as outstanding_amount
    from documents as i
    left join paid as p on p.invoice_id = i.invoice_id
    where i.document_type = 'invoice'
)

select
    *,
    {{ to_reporting('outstanding_amount', 'currency_code', 'source_rate', 'reporting_rate') }}
        as outstanding_reporting
from balances
