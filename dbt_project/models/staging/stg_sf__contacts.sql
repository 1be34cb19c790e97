-- Salesforce contacts: the latest version of each contact, deleted contacts excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_contact')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_contact'), 'id', 'system_modstamp', as_of) }}
)

select
    id as contact_id,
    account_id,
    owner_id,
    first_name,
    last_name,
    email,
    title,
    created_date as created_at,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(is_deleted, false)
