{#-
    The marts label every amount with the dbt reporting currency and mix Spark's converted
    amounts (curated) with dbt's (ERP invoices and payments): both must be the same currency.
    Returns the curated opportunities of the run's ds converted to another currency.
-#}
{%- set run_ds_sql = run_ds(var('ds', none), source('curated', 'opportunities')) %}

select opportunity_id, reporting_currency
from {{ source('curated', 'opportunities') }}
where _ds = {{ run_ds_sql }}
    and reporting_currency is distinct from {{ reporting_currency() }}
