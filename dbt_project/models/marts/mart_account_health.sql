{#-
    Account health per (ds, account): product engagement from the event stream
    (curated.account_engagement), open pipeline from the live opportunities (curated.opportunities,
    business rule `is_open_pipeline()`: not closed, probability in tally.contract's range, non-zero
    amount; reporting currency) and
    overdue ERP invoices (not void, still outstanding, due before ds) of the account's conformed
    customers. One row per live account in curated.account_engagement for the ds.

    health_status: 'at_risk' with an overdue invoice, or open pipeline but no event in 30 days;
    'quiet' with no event in 30 days; else 'engaged'.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['ds', 'account_id'],
        indexes=[{'columns': ['ds', 'account_id']}],
        on_schema_change='sync_all_columns',
        pre_hook="{{ delete_ds_partition(var('ds', none), ref('stg_curated__account_engagement'), fallback_column='ds') }}",
    )
}}

{%- set run_ds_sql = run_ds(var('ds', none), ref('stg_curated__account_engagement'), 'ds') %}

with engagement as (
    select *
    from {{ ref('stg_curated__account_engagement') }}
    where ds = {{ run_ds_sql }}
),

pipeline as (
    select
        account_id,
        count(*) as open_opportunities,
        coalesce(sum(amount_reporting), 0) as open_pipeline,
        count(*) filter (where amount_reporting is null) as open_pipeline_fx_missing
    from {{ ref('stg_curated__opportunities') }}
    where ds = {{ run_ds_sql }}
        and {{ is_open_pipeline() }}
    group by account_id
),

customers as (
    select customer_id, account_id
    from {{ ref('stg_curated__conformed_customers') }}
    where ds = {{ run_ds_sql }}
        and account_id is not null
),

overdue as (
    select
        c.account_id,
        count(*) as overdue_invoices,
        coalesce(sum(b.outstanding_reporting), 0) as overdue_amount,
        count(*) filter (where b.outstanding_reporting is null) as overdue_fx_missing,
        max(cast({{ run_ds_sql }} as date) - b.due_date) as max_days_overdue
    from {{ ref('int_erp__invoice_balances') }} as b
    inner join customers as c on c.customer_id = b.customer_id
    where b.invoice_status is distinct from 'void'
        and b.outstanding_amount > 0
        and b.due_date < cast({{ run_ds_sql }} as date)
    group by c.account_id
)

select
    e.ds,
    e.account_id,
    e.account_name,
    {{ reporting_currency() }} as reporting_currency,
    e.events_total,
    e.events_30d,
    e.distinct_users_30d,
    e.last_event_at,
    e.page_views_30d,
    e.feature_used_30d,
    e.logins_30d,
    e.email_opens_30d,
    coalesce(p.open_opportunities, 0) as open_opportunities,
    coalesce(p.open_pipeline, 0) as open_pipeline,
    coalesce(p.open_pipeline_fx_missing, 0) as open_pipeline_fx_missing,
    coalesce(o.overdue_invoices, 0) as overdue_invoices,
    coalesce(o.overdue_amount, 0) as overdue_amount,
    coalesce(o.overdue_fx_missing, 0) as overdue_fx_missing,
    o.max_days_overdue,
    case
        when coalesce(o.overdue_invoices, 0) > 0 then 'at_risk'
        when coalesce(p.open_opportunities, 0) > 0 and coalesce(e.events_30d, 0) = 0 then 'at_risk'
        when coalesce(e.events_30d, 0) = 0 then 'quiet'
        else 'engaged'
    end as health_status
from engagement as e
left join pipeline as p on p.account_id = e.account_id
left join overdue as o on o.account_id = e.account_id
