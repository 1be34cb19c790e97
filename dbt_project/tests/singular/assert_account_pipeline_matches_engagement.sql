{{ config(severity='warn') }}
{#-
    The account health mart computes open pipeline itself (business rule `is_open_pipeline()`);
    curated.account_engagement carries Spark's figure. Warn where they differ.
-#}
select
    m.account_id,
    m.open_pipeline as mart_open_pipeline,
    e.open_pipeline_reporting as curated_open_pipeline
from {{ ref('mart_account_health') }} as m
inner join {{ source('curated', 'account_engagement') }} as e
    on e.account_id = m.account_id and cast(e._ds as date) = m.ds
where m.ds = {{ run_ds(var('ds', none), source('curated', 'account_engagement')) }}
    and coalesce(e.open_pipeline_reporting, 0) <> m.open_pipeline
