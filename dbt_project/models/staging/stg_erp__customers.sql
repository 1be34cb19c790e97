-- ERP customers: the latest version of each customer; rows deleted in the ERP (tombstones, `_deleted`) excluded.
with latest as (
    {{ latest_version(source('raw', 'erp_customers'), 'customer_id', 'updated_at') }}
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
