"""Tally's contract: the names every part agrees on, and the business rules defined once.

Standard library only and import-free of the rest of Tally, so that DAG files can import it at
parse time for nothing. ``tally.catalog`` builds the fields and keys of each dataset on these
names; tests check that the two agree.

- Dataset ids are ``<source>.<object>`` (``salesforce.Opportunity``, ``erp.customers``); the
  lake path of a raw dataset is ``raw/<source>/<object>``.
- Curated datasets are Spark's outputs, under ``curated/<name>``.
- Marts are dbt's models in the ``marts`` schema.
"""

from __future__ import annotations

# -- sources and their datasets (the order is the daily DAG's) ------------------------------------
SALESFORCE_OBJECTS: tuple[str, ...] = (
    "User", "Account", "Opportunity", "Contact", "OpportunityHistory", "DatedConversionRate", "Task",
)
ERP_TABLES: tuple[str, ...] = ("customers", "sales_orders", "products", "order_lines", "invoices", "payments")
RAW_DATASETS: tuple[str, ...] = (
    *(f"salesforce.{name}" for name in SALESFORCE_OBJECTS),
    *(f"erp.{name}" for name in ERP_TABLES),
)
ERP_DATASETS: tuple[str, ...] = tuple(f"erp.{name}" for name in ERP_TABLES)

# -- Spark's curated datasets, in the order the jobs build them, and their key columns -----------
CURATED_KEYS: dict[str, str] = {
    "conformed_customers": "customer_id",
    "opportunities": "opportunity_id",
    "order_links": "order_id",
    "rep_rankings": "ranking_id",
    "account_engagement": "account_id",
}
CURATED: tuple[str, ...] = tuple(CURATED_KEYS)
# The Spark jobs (spark_jobs/<job>.py), in the order the daily DAG runs them.
SPARK_JOBS: tuple[str, ...] = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")

# -- the warehouse's marts (dbt_project/models/marts), each gated by the mart gate ----------------
MART_SCHEMA = "marts"
MARTS: tuple[str, ...] = ("mart_rep_performance", "mart_o2r_pipeline", "mart_revenue_by_country",
                          "mart_account_health")
# Airflow assets (name -> URI): tally_daily's gate_mart emits them once the marts of a ds passed,
# and they trigger tally_reconcile.
MART_ASSETS: dict[str, str] = {f"{MART_SCHEMA}.{m}": f"tally://warehouse/{MART_SCHEMA}/{m}" for m in MARTS}

# -- Kafka: the activity events --------------------------------------------------------------------
EVENTS_TOPIC = "tally.activity"
EVENTS_GROUP = "tally-lake-activity"

# -- business rules (used by Spark, dbt and the gates alike) ---------------------------------------
# Open pipeline: an opportunity that is not closed, with a probability in this range (inclusive,
# percent) and a non-zero amount. dbt receives the bounds as vars (``tally.stages.dbt``); Spark
# and the mart gate read them from here.
OPEN_PIPELINE_PROBABILITY: tuple[float, float] = (10.0, 89.0)


def dbt_vars() -> dict[str, float]:
    """The business rules as dbt vars (``var('open_pipeline_min_probability')`` …)."""
    low, high = OPEN_PIPELINE_PROBABILITY
    return {"open_pipeline_min_probability": low, "open_pipeline_max_probability": high}
