-- Spark's account engagement: one row per live account per ds (each ds a full snapshot), with
-- the product-usage events from Kafka and Spark's open pipeline. Staging names the snapshot's logical date `ds`.
with source as (
    select * from {{ source('curated', 'account_engagement') }}
),

renamed as (
    select
        account_id,
        account_name,
        events_total,
        events_30d,
        distinct_users_30d,
        last_event_at,
        page_views_30d,
        feature_used_30d,
        logins_30d,
        email_opens_30d,
        open_opportunities,
        open_pipeline_reporting,
        _ds as ds,
        _loaded_at as loaded_at
    from source
)

select * from renamed
