-- ERP products: the latest version of each product; products deleted in the ERP (tombstones) excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_products')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_products'), 'product_id', 'updated_at', as_of) }}
)

select
    product_id,
    sku,
    name as product_name,
    category,
    list_price,
    active as is_active,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
