-- ERP order lines: the latest version of each line; deleted lines (tombstones) excluded.
-- Lines that lost their order in the ERP never land here: they are in the quarantine zone.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'erp_order_lines')) %}

with latest as (
    {{ latest_version(source('raw', 'erp_order_lines'), 'line_id', 'updated_at', as_of) }}
)

select
    line_id,
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price,
    discount_amount,
    line_amount,
    created_at,
    updated_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(_deleted, false)
