{#-
    Cross-check of the Spark rankings against the business rules, from curated.opportunities:
    per (owner, close quarter), won amount = won opportunities' reporting amounts and open
    pipeline = open opportunities by the business rule (`is_open_pipeline()`: not closed,
    probability in tally.contract's range, non-zero amount), zero-amount won opportunities excluded.
    Returns the (owner, quarter) pairs where the mart disagrees (or that only one side has).
-#}
{%- set run_ds_sql = run_ds(var('ds', none), source('curated', 'rep_rankings')) %}

with expected as (
    select
        owner_id,
        to_char(close_date, 'YYYY-"Q"Q') as quarter,
        count(*) as opportunity_count,
        coalesce(sum(amount_reporting) filter (where is_won and amount <> 0), 0) as won_amount,
        coalesce(sum(amount_reporting) filter (where {{ is_open_pipeline() }}), 0) as open_pipeline
    from {{ source('curated', 'opportunities') }}
    where _ds = {{ run_ds_sql }}
        and owner_id is not null
        and close_date is not null
    group by 1, 2
),

actual as (
    select
        owner_id,
        quarter,
        opportunity_count,
        coalesce(won_amount, 0) as won_amount,
        coalesce(open_pipeline, 0) as open_pipeline
    from {{ ref('mart_rep_performance') }}
    where ds = {{ run_ds_sql }}
)

select
    coalesce(e.owner_id, a.owner_id) as owner_id,
    coalesce(e.quarter, a.quarter) as quarter,
    e.won_amount as expected_won_amount,
    a.won_amount as mart_won_amount,
    e.open_pipeline as expected_open_pipeline,
    a.open_pipeline as mart_open_pipeline,
    e.opportunity_count as expected_opportunity_count,
    a.opportunity_count as mart_opportunity_count
from expected as e
full outer join actual as a
    on a.owner_id = e.owner_id and a.quarter = e.quarter
where e.owner_id is null
    or a.owner_id is null
    or e.won_amount <> a.won_amount
    or e.open_pipeline <> a.open_pipeline
    or e.opportunity_count <> a.opportunity_count
