"""
### tally_daily — one logical date from source to mart

For the run's data interval (one UTC day; **ds** = the interval's start date):

1. **extract** each Salesforce object and ERP table changed in the interval to the lake's raw
   zone (`raw/<source>/<object>/ds=<ds>/` + `_manifest.json`). The first run of a dataset is a
   full initial load. Re-running a ds replaces it.
2. **gate_raw** (Great Expectations): row count equals the source's own count for the interval,
   keys present and unique, domains valid.
3. **spark_rep_rankings**: latest version per Id across raw runs, accounts and owners joined,
   PERCENT_RANK of owners by won amount within region → curated zone.
4. **gate_curated**: Spark's outputs hold exactly the live records the raw zone implies
   (computed independently), keys unique, domains valid.
5. **load_warehouse**: COPY raw and curated partitions into Postgres, idempotent per (table, ds).
6. **gate_warehouse**: every table's ds slice, counted and checksummed in SQL, equals its manifest.
7. **dbt_build**: staging models and `marts.mart_rep_performance`, with dbt tests.
8. **gate_mart**: the mart reconciled with the curated zone (rows, won amount).

Every stage writes row counts and key checksums to `ops.ledger`; every gate writes
`ops.validation_results`. A failed gate stops everything downstream. Data problems raise
`AirflowFailException` and are never retried; retries are for transient errors only.
On-call: see the README's runbook, and `tally reconcile --ds <ds>`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task, task_group

from tally.alerts.callback import alert_on_failure  # cheap: loads nothing until a task fails

# Kept in step with tally.catalog (tests check it) so parsing does not import the pipeline.
DATASETS = [
    "salesforce.User",
    "salesforce.Account",
    "salesforce.Opportunity",
    "salesforce.Contact",
    "salesforce.OpportunityHistory",
    "salesforce.DatedConversionRate",
    "salesforce.Task",
    "erp.customers",
    "erp.sales_orders",
    "erp.products",
    "erp.order_lines",
    "erp.invoices",
    "erp.payments",
]
SPARK_JOB = str(Path(__file__).resolve().parents[1] / "spark_jobs" / "rep_rankings.py")
DS = "{{ data_interval_start | ds }}"
MART = Asset(name="marts.mart_rep_performance", uri="tally://warehouse/marts/mart_rep_performance")


def _ds(context_interval_start) -> str:
    return context_interval_start.strftime("%Y-%m-%d")


@dag(
    dag_id="tally_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["tally", "salesforce", "erp", "marts"],
    doc_md=__doc__,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "on_failure_callback": alert_on_failure},
)
def tally_daily():
    @task(retries=3, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True)
    def extract(dataset_id: str, data_interval_start=None, data_interval_end=None, run_id=None) -> dict:
        from tally.airflow_adapter import run_stage

        return run_stage("extract", run_id, dataset_id, _ds(data_interval_start), data_interval_start,
                         data_interval_end, need=(dataset_id.split(".")[0],))

    @task
    def gate_raw(dataset_id: str, data_interval_start=None, run_id=None) -> list[dict]:
        from tally.airflow_adapter import run_stage

        return run_stage("gate_raw", run_id, dataset_id, _ds(data_interval_start))

    @task_group(group_id="land")
    def land():
        for dataset_id in DATASETS:
            name = dataset_id.replace(".", "_")
            landed = extract.override(task_id=f"extract_{name}")(dataset_id)
            landed >> gate_raw.override(task_id=f"gate_raw_{name}")(dataset_id)

    spark = SparkSubmitOperator(
        task_id="spark_rep_rankings",
        application=SPARK_JOB,
        conn_id="spark_default",
        name="tally-rep-rankings-{{ ds_nodash }}",
        application_args=["--lake", "{{ conn.tally_lake.host }}", "--ds", DS],
        conf={"spark.sql.session.timeZone": "UTC"},
        retries=1,
    )

    @task
    def gate_curated(data_interval_start=None, run_id=None) -> list[dict]:
        from tally.airflow_adapter import run_stage

        return run_stage("gate_curated", run_id, _ds(data_interval_start))

    @task
    def gate_warehouse(data_interval_start=None, run_id=None) -> list[dict]:
        from tally.airflow_adapter import run_stage

        return run_stage("gate_warehouse", run_id, _ds(data_interval_start))

    @task
    def load_warehouse(data_interval_start=None, run_id=None) -> list[dict]:
        from tally.airflow_adapter import run_stage

        return run_stage("load", run_id, _ds(data_interval_start))

    @task
    def dbt_build(data_interval_start=None, run_id=None) -> None:
        from tally.airflow_adapter import run_stage

        run_stage("dbt_build", run_id, _ds(data_interval_start))

    @task(outlets=[MART])
    def gate_mart(data_interval_start=None, run_id=None) -> list[dict]:
        from tally.airflow_adapter import run_stage

        return run_stage("gate_mart", run_id, _ds(data_interval_start))

    loaded = land() >> spark >> gate_curated() >> load_warehouse() >> gate_warehouse()
    loaded >> dbt_build() >> gate_mart()


tally_daily()
