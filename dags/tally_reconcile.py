"""
### tally_reconcile — the ERP's current rows vs the warehouse, every key, daily

The per-ds gates prove each hop kept what the previous one handed it; they cannot see a row
the extractor never read (a late commit with an old `updated_at`, a missed hard delete). Once
a day, after `tally_daily` has loaded, this DAG compares each ERP table with the warehouse by
**key and version** (`updated_at`), pushed down as segment checksums with bisection into both
databases, and heals what it finds:

1. **reconcile_erp_<table>** (one per table, in parallel): refresh
   `reconcile.erp_<table>_current` (latest landed version per key), diff the source against
   it, classify the differing keys (**missing**, **extra**, **stale**; rows changed after the
   newest loaded ds are **in flight** and left to the next daily run; rows in the quarantine
   zone are accounted for), re-extract exactly the missing/stale keys and tombstone the extra
   ones into the newest loaded partition of the raw zone, reload that ds, compare again.
2. **check**: one `ops.validation_results` row per table (hop `reconcile`); when anything was
   found, **one alert** (per DAG, ds and check) with the counts, found / healed / left; fails
   (no retry) if anything is left unhealed.

Triggered by the marts' assets: it runs once `tally_daily`'s `gate_mart` has passed for a ds
(that ds is the run's ds), so never while `tally_daily` is extracting the ERP. Do not clear it
while `tally_daily` is running. On-call: `docs/runbook.md#full-reconciliation-found-differences`,
`tally reconcile --full --no-heal --table erp.<table>`; design: `docs/reconciliation.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from tally import contract  # standard library only: cheap at parse time
from tally.airflow.callback import alert_on_failure  # cheap: loads nothing until a task fails


@dag(
    dag_id="tally_reconcile",
    description="Every ERP key and version against the warehouse after each daily run; heals what differs",
    schedule=[Asset(name=name, uri=uri) for name, uri in contract.MART_ASSETS.items()],  # tally_daily's gate_mart
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # heals rewrite the newest raw partition: one writer at a time
    dagrun_timeout=timedelta(hours=3),
    tags=["tally", "erp", "reconciliation"],
    doc_md=__doc__,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=2),
                  "max_retry_delay": timedelta(minutes=10),
                  "on_failure_callback": alert_on_failure},
)
def tally_reconcile():
    @task(retries=2, retry_exponential_backoff=True)
    def reconcile(dataset_id: str, run_id=None) -> dict:
        """Compare one ERP table with `reconcile.erp_<table>_current` by key and version (segment
        checksums, bisection), classify missing / extra / stale / in-flight keys, heal them into the
        newest loaded ds and compare again. See `docs/reconciliation.md`."""
        from tally.airflow import tasks

        return tasks.reconcile_table(dataset_id, run_id)

    @task(retries=0)
    def check(reports: list[dict], triggering_asset_events=None, data_interval_start=None, dag_run=None,
              run_id=None, ti=None) -> dict:
        """One `ops.validation_results` row per table (hop `reconcile`) and, when anything was found,
        one alert with found / healed / left; fails (no retry) if anything is left unhealed. On-call:
        `docs/runbook.md#full-reconciliation-found-differences`."""
        from tally.airflow import tasks

        ds = tasks.triggering_ds(triggering_asset_events, data_interval_start, getattr(dag_run, "run_after", None))
        return tasks.reconcile_check(ds, list(reports), run_id, ti.dag_id, ti.task_id)

    reports = [reconcile.override(task_id=f"reconcile_erp_{name}")(f"erp.{name}") for name in contract.ERP_TABLES]
    check(reports)


tally_reconcile()
