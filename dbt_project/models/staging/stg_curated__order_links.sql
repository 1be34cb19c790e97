-- Spark's ERP sales orders linked to their account and opportunity: one row per live order per
-- ds (each ds a full snapshot). Staging names the snapshot's logical date `ds`.
with source as (
    select * from {{ source('curated', 'order_links') }}
),

renamed as (
    select
        order_id,
        customer_id,
        account_id,
        opportunity_id,
        link,
        order_date,
        status,
        currency,
        total_amount,
        fx_rate,
        amount_reporting,
        _ds as ds,
        _loaded_at as loaded_at
    from source
)

select * from renamed
