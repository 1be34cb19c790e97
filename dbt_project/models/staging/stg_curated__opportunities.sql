-- Spark's enriched opportunities: one row per live opportunity per ds (each ds a full snapshot),
-- amounts converted to the reporting currency. Staging names the snapshot's logical date `ds`.
with source as (
    select * from {{ source('curated', 'opportunities') }}
),

renamed as (
    select
        opportunity_id,
        opportunity_name,
        account_id,
        account_name,
        billing_country,
        industry,
        owner_id,
        owner_name,
        region,
        stage_name,
        probability,
        close_date,
        is_closed,
        is_won,
        currency_iso_code,
        amount,
        fx_rate,
        reporting_currency,
        amount_reporting,
        customer_id,
        order_count,
        created_date,
        system_modstamp,
        _ds as ds,
        _loaded_at as loaded_at
    from source
)

select * from renamed
