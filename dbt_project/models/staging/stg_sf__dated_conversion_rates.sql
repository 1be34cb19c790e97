-- Salesforce effective-dated currency rates (units of the currency per one corporate-currency
-- unit), valid from start_date (inclusive) to next_start_date (exclusive; null = still valid).
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_dated_conversion_rate')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_dated_conversion_rate'), 'id', 'system_modstamp', as_of) }}
)

select
    id as conversion_rate_id,
    iso_code as currency_code,
    conversion_rate,
    start_date,
    next_start_date,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
