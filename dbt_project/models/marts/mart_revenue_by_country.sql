{#-
    Monthly bookings, billings and collections per customer country, in the reporting currency,
    as of the run's ds (one full set of months per ds; incremental per ds like the other marts).

      bookings     live sales orders not cancelled, by order month   (curated.order_links: Spark's amounts)
      billings     live invoices not void, by invoice month          (int_erp__documents)
      collections  live payments, by payment month                   (int_erp__documents)

    Country is the ERP customer's (curated.conformed_customers); 'unknown' when the customer is
    not a live conformed customer. Every document is counted in *_count; one whose FX rate was
    missing adds nothing to the amount and is counted in *_fx_missing instead of being dropped.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['ds', 'country', 'month'],
        indexes=[{'columns': ['ds', 'country', 'month']}],
        on_schema_change='sync_all_columns',
        pre_hook="{{ delete_ds_partition(var('ds', none), ref('stg_curated__order_links'), fallback_column='ds') }}",
    )
}}

{%- set run_ds_sql = run_ds(var('ds', none), ref('stg_curated__order_links'), 'ds') %}

with customers as (
    select customer_id, country
    from {{ ref('stg_curated__conformed_customers') }}
    where ds = {{ run_ds_sql }}
),

bookings as (
    select
        customer_id,
        order_date as document_date,
        amount_reporting
    from {{ ref('stg_curated__order_links') }}
    where ds = {{ run_ds_sql }}
        and status is distinct from 'cancelled'
),

billings as (
    select customer_id, document_date, amount_reporting
    from {{ ref('int_erp__documents') }}
    where document_type = 'invoice'
        and status is distinct from 'void'
),

collections as (
    select customer_id, document_date, amount_reporting
    from {{ ref('int_erp__documents') }}
    where document_type = 'payment'
),

documents as (
    select 'bookings' as measure, * from bookings
    union all
    select 'billings' as measure, * from billings
    union all
    select 'collections' as measure, * from collections
),

located as (
    select
        coalesce(c.country, 'unknown') as country,
        cast(date_trunc('month', d.document_date) as date) as month,
        d.measure,
        d.amount_reporting
    from documents as d
    left join customers as c on c.customer_id = d.customer_id
)

select
    cast({{ run_ds_sql }} as date) as ds,
    country,
    month,
    {{ reporting_currency() }} as reporting_currency,
    coalesce(sum(amount_reporting) filter (where measure = 'bookings'), 0) as bookings_amount,
    count(*) filter (where measure = 'bookings') as bookings_count,
    count(*) filter (where measure = 'bookings' and amount_reporting is null) as bookings_fx_missing,
    coalesce(sum(amount_reporting) filter (where measure = 'billings'), 0) as billings_amount,
    count(*) filter (where measure = 'billings') as billings_count,
    count(*) filter (where measure = 'billings' and amount_reporting is null) as billings_fx_missing,
    coalesce(sum(amount_reporting) filter (where measure = 'collections'), 0) as collections_amount,
    count(*) filter (where measure = 'collections') as collections_count,
    count(*) filter (where measure = 'collections' and amount_reporting is null) as collections_fx_missing
from located
group by country, month
