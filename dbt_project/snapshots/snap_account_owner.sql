{#-
    SCD2 history of each account's owner: a new version whenever owner_id changes. A deleted
    account's last version is closed (hard_deletes='invalidate').
-#}
{% snapshot snap_account_owner %}
{{
    config(
        schema='snapshots',
        unique_key='account_id',
        strategy='check',
        check_cols=['owner_id'],
        hard_deletes='invalidate',
    )
}}
select
    account_id,
    account_name,
    owner_id,
    modified_at,
    loaded_ds
from {{ ref('stg_sf__accounts') }}
{% endsnapshot %}
