-- Salesforce users: the latest version of each user (users are deactivated, never deleted).
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_user')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_user'), 'id', 'system_modstamp', as_of) }}
)

select
    id as user_id,
    name as user_name,
    email,
    is_active,
    region__c as region,
    created_date as created_at,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
