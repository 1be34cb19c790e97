-- Salesforce opportunity stage history: one row per stage change, deleted rows excluded.
with latest as (
    {{ latest_version(source('raw', 'sf_opportunity_history'), 'id', 'system_modstamp') }}
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
