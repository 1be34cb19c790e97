-- Spark's conformed ERP customers: one row per live customer per ds (each ds a full snapshot).
-- Already clean; staging only names the snapshot's logical date `ds`.
with source as (
    select * from {{ source('curated', 'conformed_customers') }}
),

renamed as (
    select
        customer_id,
        customer_name,
        country,
        sf_account_ref,
        account_id,
        resolution,
        is_resolved,
        _ds as ds,
        _loaded_at as loaded_at
    from source
)

select * from renamed
