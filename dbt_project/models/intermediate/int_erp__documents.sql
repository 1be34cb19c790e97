{#-
    Every live ERP sales order, invoice and payment as of the run's ds (the staging models hold
    the latest version among the slices with _ds <= ds, tombstones removed), with the ordering
    customer and the amount in the reporting currency by the curated contract's FX rule (rate in
    force on the document's date: order_date, invoice_date, payment_date). A missing rate leaves
    amount_reporting null and sets fx_missing; the document is kept.
-#}
with orders as (
    select * from {{ ref('stg_erp__sales_orders') }}
),

invoices as (
    select * from {{ ref('stg_erp__invoices') }}
),

payments as (
    select * from {{ ref('stg_erp__payments') }}
),

documents as (
    select
        'order' as document_type,
        o.order_id as document_id,
        o.order_id,
        cast(null as bigint) as invoice_id,
        o.customer_id,
        o.order_date as document_date,
        cast(null as date) as due_date,
        o.order_status as status,
        o.currency_code,
        o.total_amount as amount
    from orders as o

    union all

    select
        'invoice' as document_type,
        i.invoice_id as document_id,
        i.order_id,
        i.invoice_id,
        o.customer_id,
        i.invoice_date as document_date,
        i.due_date,
        i.invoice_status as status,
        i.currency_code,
        i.amount
    from invoices as i
    left join orders as o on o.order_id = i.order_id

    union all

    select
        'payment' as document_type,
        p.payment_id as document_id,
        i.order_id,
        p.invoice_id,
        o.customer_id,
        p.payment_date as document_date,
        cast(null as date) as due_date,
        cast(null as text) as status,
        p.currency_code,
        p.amount
    from payments as p
    left join invoices as i on i.invoice_id = p.invoice_id
    left join orders as o on o.order_id = i.order_id
),

converted as (
    select
        d.*,
        src.conversion_rate as source_rate,
        rep.conversion_rate as reporting_rate,
        {{ reporting_currency() }} as reporting_currency,
        {{ to_reporting('d.amount', 'd.currency_code', 'src.conversion_rate', 'rep.conversion_rate') }}
            as amount_reporting
    from documents as d
    left join {{ ref('int_fx_rates') }} as src
        on {{ fx_rate_in_force('src', 'd.currency_code', 'd.document_date') }}
    left join {{ ref('int_fx_rates') }} as rep
        on {{ fx_rate_in_force('rep', reporting_currency(), 'd.document_date') }}
)

select
    *,
    (amount is not null and amount_reporting is null) as fx_missing
from converted
