-- ERP invoices: the latest version of each invoice; deleted invoices (tombstones) excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_invoices')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_invoices'), 'invoice_id', 'updated_at', as_of) }}
)

select
    invoice_id,
    order_id,
    invoice_number,
    invoice_date,
    due_date,
    currency as currency_code,
    amount,
    status as invoice_status,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
