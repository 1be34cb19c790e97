-- Salesforce accounts: the latest version of each account, deleted accounts excluded.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_account')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_account'), 'id', 'system_modstamp', as_of) }}
)

select
    id as account_id,
    name as account_name,
    billing_country,
    industry,
    owner_id,
    created_date as created_at,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(is_deleted, false)
