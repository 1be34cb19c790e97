-- ERP products: the latest version of each product; products deleted in the ERP (tombstones) excluded.
with latest as (
    {{ latest_version(source('raw', 'erp_products'), 'product_id', 'updated_at') }}
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
