{#-
    Every live ERP sales order, invoice and payment as of the run's ds (latest version among the
    slices with _ds <= ds, tombstones removed), with the ordering customer and the amount in the
    reporting currency by the curated contract's FX rule (rate in force on the document's date:
    order_date, invoice_date, payment_date). A missing rate leaves amount_reporting null and sets
    fx_missing; the document is kept.
-#}
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_sales_orders')) %}

with orders as (
    select * from (
        {{ latest_version(source('raw', 'erp_sales_orders'), 'order_id', 'updated_at', as_of) }}
    ) as latest
    where not coalesce(_deleted, false)
),

invoices as (
    select * from (
        {{ latest_version(source('raw', 'erp_invoices'), 'invoice_id', 'updated_at', as_of) }}
    ) as latest
    where not coalesce(_deleted, false)
),

payments as (
    select * from (
        {{ latest_version(source('raw', 'erp_payments'), 'payment_id', 'updated_at', as_of) }}
    ) as latest
    where not coalesce(_deleted, false)
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
        o.status,
        o.currency as currency_code,
        o.total_amount as amount
    from orders as o

    union all

    select
        'invoice',
        i.invoice_id,
        i.order_id,
        i.invoice_id,
        o.customer_id,
        i.invoice_date,
        i.due_date,
        i.status,
        i.currency,
        i.amount
    from invoices as i
    left join orders as o on o.order_id = i.order_id

    union all

    select
        'payment',
        p.payment_id,
        i.order_id,
        p.invoice_id,
        o.customer_id,
        p.payment_date,
        cast(null as date),
        cast(null as text),
        p.currency,
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
