-- Salesforce opportunities: the latest version of each opportunity, deleted ones excluded.
-- Amounts stay in the opportunity's own currency here; curated.opportunities has them converted.
-- As of the run's ds (var `ds`, default the latest slice): only slices with `_ds <= ds` count.
{%- set as_of = run_ds(var('ds', none), source('raw', 'sf_opportunity')) %}

with latest as (
    {{ latest_version(source('raw', 'sf_opportunity'), 'id', 'system_modstamp', as_of) }}
)

select
    id as opportunity_id,
    name as opportunity_name,
    account_id,
    owner_id,
    stage_name,
    case
        when is_won then 'won'
        when is_closed then 'lost'
        else 'open'
    end as stage_category,
    currency_iso_code as currency_code,
    amount,
    probability,
    close_date,
    coalesce(is_closed, false) as is_closed,
    coalesce(is_won, false) as is_won,
    created_date as created_at,
    system_modstamp as modified_at,
    _ds as loaded_ds,
    _loaded_at as loaded_at
from latest
where not coalesce(is_deleted, false)
