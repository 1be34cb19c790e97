-- Salesforce tasks (activities: calls, emails, meetings), deleted tasks excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_task')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_task'), 'id', 'system_modstamp', as_of) }}
)

select
    id as task_id,
    what_id,
    who_id,
    owner_id,
    subject,
    status,
    task_subtype,
    activity_date,
    is_closed,
    created_date as created_at,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(is_deleted, false)
