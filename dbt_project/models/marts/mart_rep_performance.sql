{#-
    Rep performance per (ds, owner, close quarter): the Spark job's rankings for that ds
    (stg_curated__rep_rankings, i.e. curated.rep_rankings: won amount, open pipeline, counts, PERCENT_RANK and DENSE_RANK within
    region and quarter, all in the reporting currency), with an exact win rate and whether the rep
    is still active. ds = var('ds') ('YYYY-MM-DD'), else the latest ranked ds.

    Incremental, ds-partitioned: the pre-hook deletes the run's ds first and delete+insert on
    (ds, ranking_id) writes it again, all in one transaction, so re-running a ds replaces exactly
    that ds and leaves the others. (--full-refresh rebuilds the table with the run's ds only.)
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['ds', 'ranking_id'],
        indexes=[{'columns': ['ds', 'ranking_id']}],
        on_schema_change='sync_all_columns',
        pre_hook="{{ delete_ds_partition(var('ds', none), ref('stg_curated__rep_rankings'), fallback_column='ds') }}",
    )
}}

{%- set run_ds_sql = run_ds(var('ds', none), ref('stg_curated__rep_rankings'), 'ds') %}

with rankings as (
    select *
    from {{ ref('stg_curated__rep_rankings') }}
    where ds = {{ run_ds_sql }}
),

users as (
    select user_id, is_active
    from {{ ref('stg_sf__users') }}
)

select
    rankings.ds,
    rankings.ranking_id,
    rankings.owner_id,
    rankings.owner_name,
    rankings.region,
    rankings.quarter,
    {{ reporting_currency() }} as reporting_currency,
    rankings.won_amount,
    rankings.won_count,
    rankings.closed_count,
    -- Exact numeric division; trim_scale drops the trailing zeros Postgres pads the quotient
    -- with (0.75 rather than 0.75000000000000000000). Null when the rep closed nothing.
    trim_scale(cast(rankings.won_count as numeric) / nullif(rankings.closed_count, 0)) as win_rate,
    rankings.open_pipeline,
    rankings.opportunity_count,
    rankings.percent_rank as percent_rank_in_region,
    rankings.dense_rank as dense_rank_in_region,
    users.is_active
from rankings
left join users
    on users.user_id = rankings.owner_id
