-- Spark's rep rankings: one row per (owner, close quarter) per ds (each ds a full snapshot).
-- Staging names the snapshot's logical date `ds`.
with source as (
    select * from {{ source('curated', 'rep_rankings') }}
),

renamed as (
    select
        ranking_id,
        owner_id,
        owner_name,
        region,
        quarter,
        opportunity_count,
        won_count,
        closed_count,
        won_amount,
        open_pipeline,
        win_rate,
        percent_rank,
        dense_rank,
        _ds as ds,
        _loaded_at as loaded_at
    from source
)

select * from renamed
