-- ERP sales orders: the latest version of each order; rows deleted in the ERP (tombstones, `_deleted`) excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_sales_orders')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_sales_orders'), 'order_id', 'updated_at', as_of) }}
)

select
    order_id,
    customer_id,
    order_date,
    status as order_status,
    currency as currency_code,
    total_amount,
    sf_opportunity_ref,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
