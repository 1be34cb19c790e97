{#-
    Opportunity-to-revenue flow per ds: one row per live ERP sales order (with its linked
    opportunity, if any, and its invoices and payments) plus one row per live opportunity that has
    no live order yet. Each row is in exactly one phase:

      opportunity     open opportunity, no order          since the opportunity was created
      closed_lost     lost opportunity, no order          since its close date
      awaiting_order  won opportunity, no order yet       since its close date
      ordered         order, nothing invoiced (non-void)  since the order date
      invoiced        invoiced, not fully paid            since the first invoice date
      paid            payments cover the invoiced amount  since the last payment date
      cancelled       order cancelled                     since the order date

    days_in_phase = ds - phase start (never negative); is_stalled = an active phase (opportunity,
    awaiting_order, ordered, invoiced) held longer than var('o2r_stall_days')[phase] days.
    Amounts are in the reporting currency; the order amount is curated.order_links' (Spark's),
    invoices and payments are converted by int_erp__documents with the same FX rule.
    Incremental per ds like the other marts.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['ds', 'flow_id'],
        indexes=[{'columns': ['ds', 'flow_id']}],
        on_schema_change='sync_all_columns',
        pre_hook="{{ delete_ds_partition(var('ds', none), ref('stg_curated__order_links'), fallback_column='ds') }}",
    )
}}

{%- set run_ds_sql = run_ds(var('ds', none), ref('stg_curated__order_links'), 'ds') %}
{%- set stall = var('o2r_stall_days', {'opportunity': 90, 'awaiting_order': 14, 'ordered': 14, 'invoiced': 45}) %}

with opportunities as (
    select *
    from {{ ref('stg_curated__opportunities') }}
    where ds = {{ run_ds_sql }}
),

orders as (
    select *
    from {{ ref('stg_curated__order_links') }}
    where ds = {{ run_ds_sql }}
),

invoices as (
    select
        order_id,
        count(*) as invoice_count,
        sum(amount) as invoiced_amount,
        sum(amount_reporting) as invoiced_amount_reporting,
        count(*) filter (where amount_reporting is null) as invoices_fx_missing,
        min(invoice_date) as first_invoice_date
    from {{ ref('int_erp__invoice_balances') }}
    where invoice_status is distinct from 'void'
    group by order_id
),

payments as (
    select
        order_id,
        count(*) as payment_count,
        sum(amount) as paid_amount,
        sum(amount_reporting) as paid_amount_reporting,
        count(*) filter (where amount_reporting is null) as payments_fx_missing,
        max(document_date) as last_payment_date
    from {{ ref('int_erp__documents') }}
    where document_type = 'payment'
    group by order_id
),

-- One full join gives every flow once: each live order (with its opportunity, if any) and each
-- live opportunity that has no live order.
flows as (
    select
        case
            when o.order_id is not null then 'order:' || o.order_id
            else 'opportunity:' || opp.opportunity_id
        end as flow_id,
        coalesce(o.opportunity_id, opp.opportunity_id) as opportunity_id,
        o.order_id,
        coalesce(o.account_id, opp.account_id) as account_id,
        case when o.order_id is not null then o.customer_id else opp.customer_id end as customer_id,
        opp.owner_id,
        opp.owner_name,
        opp.region,
        opp.stage_name,
        opp.is_closed,
        opp.is_won,
        opp.close_date,
        cast(opp.created_date as date) as opportunity_created_on,
        opp.amount_reporting as opportunity_amount_reporting,
        o.order_date,
        o.status as order_status,
        o.currency as order_currency,
        o.total_amount as order_amount,
        o.amount_reporting as order_amount_reporting,
        coalesce(i.invoice_count, 0) as invoice_count,
        coalesce(i.invoiced_amount, 0) as invoiced_amount,
        i.invoiced_amount_reporting,
        i.first_invoice_date,
        coalesce(p.payment_count, 0) as payment_count,
        coalesce(p.paid_amount, 0) as paid_amount,
        p.paid_amount_reporting,
        p.last_payment_date,
        case
            when o.order_id is null
                then case when opp.amount_reporting is null and opp.amount is not null then 1 else 0 end
            else coalesce(i.invoices_fx_missing, 0) + coalesce(p.payments_fx_missing, 0)
                + case when o.amount_reporting is null then 1 else 0 end
        end as fx_missing
    from orders as o
    full join opportunities as opp on opp.opportunity_id = o.opportunity_id
    left join invoices as i on i.order_id = o.order_id
    left join payments as p on p.order_id = o.order_id
),

phased as (
    select
        *,
        case
            when order_id is null and is_won then 'awaiting_order'
            when order_id is null and is_closed then 'closed_lost'
            when order_id is null then 'opportunity'
            when order_status = 'cancelled' then 'cancelled'
            when invoice_count = 0 then 'ordered'
            when paid_amount >= invoiced_amount then 'paid'
            else 'invoiced'
        end as phase
    from flows
),

dated as (
    select
        *,
        case phase
            when 'opportunity' then opportunity_created_on
            when 'closed_lost' then close_date
            when 'awaiting_order' then close_date
            when 'ordered' then order_date
            when 'cancelled' then order_date
            when 'invoiced' then first_invoice_date
            when 'paid' then coalesce(last_payment_date, first_invoice_date)
        end as phase_started_on
    from phased
)

select
    cast({{ run_ds_sql }} as date) as ds,
    flow_id,
    opportunity_id,
    order_id,
    account_id,
    customer_id,
    owner_id,
    owner_name,
    region,
    stage_name,
    {{ reporting_currency() }} as reporting_currency,
    opportunity_amount_reporting,
    order_date,
    order_status,
    order_currency,
    order_amount,
    order_amount_reporting,
    invoice_count,
    invoiced_amount,
    invoiced_amount_reporting,
    payment_count,
    paid_amount,
    paid_amount_reporting,
    phase,
    phase_started_on,
    greatest(cast({{ run_ds_sql }} as date) - phase_started_on, 0) as days_in_phase,
    coalesce(
        case phase
            {% for phase_name, days in stall.items() -%}
            when '{{ phase_name }}' then cast({{ run_ds_sql }} as date) - phase_started_on > {{ days | int }}
            {% endfor -%}
            else false
        end,
        false
    ) as is_stalled,
    fx_missing
from dated
