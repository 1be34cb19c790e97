-- Effective-dated FX rates: units of `currency_code` per one unit of the corporate currency (USD),
-- each valid for valid_from <= d < valid_to (a null bound is open). The corporate currency itself
-- has no Salesforce rows: it is added here at rate 1 for every date.
with rates as (
    select
        currency_code,
        cast(conversion_rate as double precision) as conversion_rate,
        start_date as valid_from,
        next_start_date as valid_to,
        'salesforce' as rate_source
    from {{ ref('stg_sf__dated_conversion_rates') }}
)

select * from rates

union all

select
    {{ corporate_currency() }} as currency_code,
    cast(1 as double precision) as conversion_rate,
    cast(null as date) as valid_from,
    cast(null as date) as valid_to,
    'corporate' as rate_source
where
    not exists (
        select 1 from rates
        where currency_code = {{ corporate_currency() }}
    )
