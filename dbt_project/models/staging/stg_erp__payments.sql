-- ERP payments: the latest version of each payment; deleted payments (tombstones) excluded.
-- Payments whose hand-typed amount did not parse never land here: they are in the quarantine zone.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_payments')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_payments'), 'payment_id', 'updated_at', as_of) }}
)

select
    payment_id,
    invoice_id,
    payment_date,
    method as payment_method,
    amount,
    currency as currency_code,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
