{#-
    SCD2 history of each opportunity's stage: a new version whenever the stage, probability,
    closed/won flags, amount or close date change. dbt_valid_from/dbt_valid_to are the snapshot run
    times; a deleted opportunity's last version is closed (hard_deletes='invalidate').
-#}
{% snapshot snap_opportunity_stage %}
{{
    config(
        schema='snapshots',
        unique_key='opportunity_id',
        strategy='check',
        check_cols=['stage_name', 'probability', 'is_closed', 'is_won', 'amount', 'currency_code', 'close_date'],
        hard_deletes='invalidate',
    )
}}
select
    opportunity_id,
    account_id,
    owner_id,
    stage_name,
    stage_category,
    probability,
    is_closed,
    is_won,
    currency_code,
    amount,
    close_date,
    modified_at,
    loaded_ds
from {{ ref('stg_sf__opportunities') }}
{% endsnapshot %}
