-- ERP customers: the latest version of each customer; rows deleted in the ERP (tombstones, `_deleted`) excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_customers')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_customers'), 'customer_id', 'updated_at', as_of) }}
)

select
    customer_id,
    name as customer_name,
    country,
    sf_account_ref as sf_account_id,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
