-- Salesforce opportunity stage history: one row per stage change, deleted rows excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_opportunity_history')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_opportunity_history'), 'id', 'system_modstamp', as_of) }}
)

select
    id as opportunity_history_id,
    opportunity_id,
    stage_name,
    amount,
    probability,
    close_date,
    created_date as changed_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(is_deleted, false)
