"""
### tally_daily — one logical date from source to mart

For the run's data interval (one UTC day; **ds** = the interval's start date):

1. **extract** each Salesforce object and ERP table changed in the interval to the lake's raw
   zone (`raw/<source>/<object>/ds=<ds>/` + `_manifest.json`). The first run of a dataset is a
   full initial load. Re-running a ds replaces it.
2. **gate_raw** (Great Expectations), one task for every dataset once the extracts are done:
   for each landed dataset, row count equals the source's own count for the interval, keys
   present and unique, domains valid, no source field removed or retyped. A failed extract is
   not validated (it alerted for itself); Spark waits for every extract and for the gate.
3. **spark_curated**: one `spark-submit` of `spark_jobs/all_curated.py` on the `spark_default`
   connection (one application per ds: `bench/warm_spark.py`), money converted to
   `$TALLY_REPORTING_CURRENCY` (default USD; see `docs/curated.md`), running in order
   **conformed_customers** (ERP customers resolved to Salesforce accounts), **opportunity_enrichment**
   (latest live opportunities with accounts, owners, FX, the conformed customer and linked ERP
   orders; `order_links`), **rep_rankings** (PERCENT_RANK / DENSE_RANK of owners per region and
   quarter) and **account_engagement** (activity events per account, after **land_events** has
   drained the Kafka topic into the lake so the snapshot holds every event appended before it).
   Each reads yesterday's committed state plus the day's raw delta (the state zone), never all
   raw history.
4. **gate_curated**: Spark's outputs hold exactly the live records the raw zone implies
   (computed independently: row counts and key checksums), keys unique, domains valid, and
   every manifest's counts add up (resolved / unresolved, linked / unlinked, events).
5. **load_warehouse**: COPY raw and curated partitions into Postgres *staging* tables
   (`wap_raw.*`, `wap_curated.*`), idempotent per (table, ds); nothing published is touched.
6. **gate_warehouse**: every table's staged ds slice, counted and checksummed in SQL, equals its
   manifest. A failed gate leaves the published tables as they were.
7. **publish_warehouse**: all tables of the ds switch from staging to `raw.*` / `curated.*` in one
   transaction, recorded in `ops.publications` (write–audit–publish: `docs/warehouse.md`).
8. **dbt_build**: one `dbt build` for the ds: staging and intermediate views, SCD2 snapshots,
   unit tests, the four marts (`mart_rep_performance`, `mart_o2r_pipeline`,
   `mart_revenue_by_country`, `mart_account_health`) with the tests after each model. One task,
   not a task per model: measured by `bench/dbt_in_airflow.py` (see `docs/marts.md`).
9. **gate_mart**: each mart's GX suite, and its rows and money totals reconciled exactly (in SQL,
   numeric) with the curated zone. On success it updates the marts' assets, which trigger
   `tally_reconcile`.

A run not finished 3 hours after it was queued pages on-call (a `DeadlineAlert`); at 6 hours
(`dagrun_timeout`) it is failed. Gate task logs hold one line per suite (`PASSED 7/7 checks`,
`FAILED 1/7 checks: …`).

Every stage writes row counts and key checksums to `ops.ledger`; every gate writes
`ops.validation_results`. A failed gate stops everything downstream. Data problems raise
`AirflowFailException` and are never retried; retries are for transient errors only, and no
retry waits longer than its `max_retry_delay` (5 minutes for extracts, 10 for the rest), however
many tries came before.
On-call: see the README's runbook, and `tally reconcile --ds <ds>`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import (
    Asset,
    AsyncCallback,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    TaskGroup,
    TriggerRule,
    dag,
    task,
)

from tally import contract  # standard library only: cheap at parse time
from tally.airflow.callback import alert_on_failure, deadline_missed  # cheap: load nothing until called
from tally.airflow.macros import MACROS, SPARK_LAUNCH_KEYS  # cheap: imports nothing until rendered
from tally.airflow.spark import TallySparkSubmitOperator  # the provider's operator, data problems not retried

DS = "{{ data_interval_start | ds }}"
MARTS = [Asset(name=name, uri=uri) for name, uri in contract.MART_ASSETS.items()]
# A run that has not finished DEADLINE after it was queued pages on-call (Airflow 3's DeadlineAlert,
# SLAs' successor); one still running at RUN_TIMEOUT is failed, so the next ds can start.
DEADLINE = timedelta(hours=3)
RUN_TIMEOUT = timedelta(hours=6)
SPARK_DOC = ("`spark-submit spark_jobs/all_curated.py` for the ds on `spark_default`: one application running "
             "`conformed_customers` (ERP customers resolved to Salesforce accounts: `curated/conformed_customers`), "
             "`opportunity_enrichment` (live opportunities with accounts, owners, FX, the conformed customer and "
             "linked ERP orders: `curated/opportunities`, `curated/order_links`), `rep_rankings` (PERCENT_RANK / "
             "DENSE_RANK of owners per region and quarter) and `account_engagement` (activity events per account, "
             "after `land_events`), each from yesterday's state + the day's raw delta. A data problem (a job's "
             "exit 2: an input differs from its commit record) fails at once with the job's message; other "
             "failures are retried once. On-call: `docs/runbook.md#spark-job-failed`.")


def spark_curated() -> TallySparkSubmitOperator:
    """``spark-submit --py-files <library> spark_jobs/all_curated.py`` on the ``spark_default`` connection's master."""
    return TallySparkSubmitOperator(
        task_id="spark_curated",
        doc_md=SPARK_DOC,
        application="{{ spark_application('all_curated') }}",
        py_files="{{ spark_py_files() }}",
        conn_id="spark_default",
        name="tally-curated-{{ ds_nodash }}",
        application_args=["--lake", "{{ conn.tally_lake.host }}", "--ds", DS,
                          "--reporting-currency", "{{ reporting_currency() }}"],
        conf={"spark.sql.session.timeZone": "UTC",
              **{key: f"{{{{ spark_launch({key!r}, conn.spark_default.host) }}}}" for key in SPARK_LAUNCH_KEYS}},
        retries=1,
    )


@dag(
    dag_id="tally_daily",
    description="One ds from Salesforce, the ERP and Kafka to the marts, gated at every hop",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=RUN_TIMEOUT,
    deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=DEADLINE,
                           callback=AsyncCallback(deadline_missed, kwargs={"within": "3 hours after it was queued"})),
    tags=["tally", "salesforce", "erp", "marts"],
    doc_md=__doc__,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "max_retry_delay": timedelta(minutes=10),
                  "on_failure_callback": alert_on_failure},
    user_defined_macros=MACROS,
)
def tally_daily():
    @task(retries=3, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True,
          max_retry_delay=timedelta(minutes=5))
    def extract(dataset_id: str, data_interval_start=None, data_interval_end=None, run_id=None,
                dag_run=None) -> dict:
        """Land one dataset's interval in the raw zone (doc_md set per dataset below)."""
        from tally.airflow import tasks

        backfill = bool((dag_run.conf or {}).get("tally_backfill")) if dag_run is not None else False
        return tasks.extract(dataset_id, tasks.ds_of(data_interval_start), data_interval_start, data_interval_end,
                             run_id, backfill=backfill)

    @task(trigger_rule=TriggerRule.ALL_DONE, show_return_value_in_logs=False)
    def gate_raw(landed: dict[str, dict | None], data_interval_start=None, run_id=None) -> list[dict]:
        """One task for every dataset's raw gate (`expectations/raw.<dataset>.json` and the schema
        check), once the extracts are done. A failed extract (no result) alerted for itself and is not
        validated; Spark waits for every extract too. The log has one line per suite (`PASSED 7/7
        checks` / `FAILED 1/7 checks: …`); one alert per failed dataset. On-call:
        `docs/runbook.md#raw-gate-failed`."""
        from tally.airflow import tasks

        extracted = [dataset_id for dataset_id, result in landed.items() if result is not None]
        return tasks.gate_raw(tasks.ds_of(data_interval_start), extracted, run_id)

    with TaskGroup(group_id="land"):
        extracts = {dataset_id: extract.override(task_id=f"extract_{dataset_id.replace('.', '_')}",
                                                 doc_md=extract_doc(dataset_id))(dataset_id)
                    for dataset_id in contract.RAW_DATASETS}
        gated = gate_raw(extracts)

    @task(retries=3, retry_delay=timedelta(seconds=20), retry_exponential_backoff=True,
          max_retry_delay=timedelta(minutes=5))
    def land_events(run_id=None) -> dict:
        """Drain the activity topic into the lake (what tally_events does every 15 minutes), so
        account_engagement sees every event appended before the run; no topic: nothing to do."""
        from tally.airflow import tasks

        return tasks.drain_events(run_id, contract.EVENTS_TOPIC, contract.EVENTS_GROUP)

    spark = spark_curated()
    land_events() >> spark

    @task(show_return_value_in_logs=False)
    def gate_curated(data_interval_start=None, run_id=None) -> list[dict]:
        """Spark's outputs hold exactly the live records the raw zone implies (row counts and key
        checksums computed independently), keys unique, domains valid, manifests' counts add up.
        One log line per suite. On-call: `docs/runbook.md#curated-gate-failed`."""
        from tally.airflow import tasks

        return tasks.gate_curated(tasks.ds_of(data_interval_start), run_id)

    @task(show_return_value_in_logs=False)
    def gate_warehouse(data_interval_start=None, run_id=None) -> list[dict]:
        """Every table's staged ds slice in Postgres, counted and checksummed in SQL, equals the lake
        manifest it was loaded from; failed: nothing is published. One log line per table. On-call:
        `docs/runbook.md#warehouse-gate-failed`."""
        from tally.airflow import tasks

        return tasks.gate_warehouse(tasks.ds_of(data_interval_start), run_id)

    @task
    def load_warehouse(data_interval_start=None, run_id=None) -> list[dict]:
        """COPY the ds's raw and curated partitions into the staging tables (`wap_raw.*`,
        `wap_curated.*`), one transaction per (table, ds): idempotent, safe to clear; the published
        tables are not touched. On-call: `docs/runbook.md#warehouse-load-failed`."""
        from tally.airflow import tasks

        return tasks.load(tasks.ds_of(data_interval_start), run_id)

    @task
    def publish_warehouse(data_interval_start=None, run_id=None) -> dict:
        """Publish the gated staging slices of the ds to `raw.*` and `curated.*`: every table in one
        transaction, recorded in `ops.publications`; a re-run after success does nothing. On-call:
        `docs/runbook.md#warehouse-publish-failed`."""
        from tally.airflow import tasks

        return tasks.publish(tasks.ds_of(data_interval_start), run_id)

    @task
    def dbt_build(data_interval_start=None, run_id=None) -> None:
        """One `dbt build` for the ds: staging and intermediate views, SCD2 snapshots, unit tests, the
        four marts with their tests. On-call: `docs/runbook.md#dbt-build-failed`."""
        from tally.airflow import tasks

        tasks.dbt_build(tasks.ds_of(data_interval_start), run_id)

    @task(outlets=MARTS, show_return_value_in_logs=False)
    def gate_mart(data_interval_start=None, run_id=None, outlet_events=None) -> list[dict]:
        """Each mart's suite, and its rows and money totals reconciled exactly with the curated zone.
        On success it updates the marts' assets (their events carry the ds), which triggers
        `tally_reconcile`. One log line per suite. On-call: `docs/runbook.md#mart-gate-failed`."""
        from tally.airflow import tasks

        ds = tasks.ds_of(data_interval_start)
        results = tasks.gate_mart(ds, run_id)
        for asset in MARTS:
            outlet_events[asset].extra = {"ds": ds}
        return results

    [*extracts.values(), gated] >> spark
    loaded = spark >> gate_curated() >> load_warehouse() >> gate_warehouse()
    loaded >> publish_warehouse() >> dbt_build() >> gate_mart()


def extract_doc(dataset_id: str) -> str:
    source, name = dataset_id.split(".", 1)
    return (f"Land `{dataset_id}` changed in the run's data interval (with the overlap window) to "
            f"`raw/{source}/{name}/ds=<ds>/` and its `_manifest.json`; ledger: source and raw hops. Re-running "
            "replaces the ds. In a `tally backfill` run the day's landed partition is reused (verified), "
            "never re-extracted from a source that holds only current state (`docs/backfill.md`). "
            "Retried on transient errors; on-call: `docs/runbook.md#extraction-gave-up`.")


tally_daily()
