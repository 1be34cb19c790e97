"""Airflow conventions every Tally DAG keeps (issue 15): a description and doc_md on every DAG and
every task, a run timeout and a deadline alert on the daily run wired to Tally's alerting,
tally_reconcile triggered by the marts' assets, gate results logged one line per suite."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from tally import contract

DAGS = Path(__file__).resolve().parents[3] / "dags"
DAG_FILES = ("tally_daily", "tally_events", "tally_reconcile", "tally_maintenance")


def _dag(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_conventions_under_test", DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)(), module


@pytest.fixture(scope="module", params=DAG_FILES)
def dag(request):
    return _dag(request.param)[0]


def test_every_dag_has_a_description_and_doc_md(dag):
    assert dag.description and len(dag.description) > 20, dag.dag_id
    assert dag.doc_md and dag.doc_md.lstrip().startswith(f"### {dag.dag_id}")


def test_every_task_has_doc_md(dag):
    missing = [t.task_id for t in dag.tasks if not (t.doc_md or "").strip()]
    assert not missing, f"{dag.dag_id}: tasks without doc_md: {missing}"


def test_extract_docs_name_their_own_dataset():
    daily, _ = _dag("tally_daily")
    for dataset_id in contract.RAW_DATASETS:
        doc = daily.get_task(f"land.extract_{dataset_id.replace('.', '_')}").doc_md
        assert f"`{dataset_id}`" in doc and "extraction-gave-up" in doc
    spark = daily.get_task("spark_curated").doc_md
    assert "spark_jobs/all_curated.py" in spark and all(f"`{job}`" in spark for job in contract.SPARK_JOBS)


def test_the_daily_run_has_a_timeout_and_a_deadline_alert_that_pages_on_call():
    from airflow.sdk import AsyncCallback, DeadlineReference

    daily, module = _dag("tally_daily")
    assert daily.dagrun_timeout == module.RUN_TIMEOUT == timedelta(hours=6)
    (deadline,) = daily.deadline
    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == module.DEADLINE < daily.dagrun_timeout  # pages before the run is failed
    assert isinstance(deadline.callback, AsyncCallback)
    assert deadline.callback.path == "tally.airflow.callback.deadline_missed"
    events, _ = _dag("tally_events")
    assert events.dagrun_timeout < timedelta(minutes=15)  # a run never overlaps the next one


def test_the_deadline_callback_raises_one_tally_alert():
    from tally.airflow.callback import deadline_missed, raise_deadline_alert
    from tally.alerts.config import AlertConfig

    assert asyncio.iscoroutinefunction(deadline_missed)
    context = {"dag_run": {"dag_id": "tally_daily", "dag_run_id": "manual__2026-12-02", "state": "running",
                           "data_interval_start": "2026-12-01T00:00:00Z", "logical_date": "2026-12-01T00:00:00Z"},
               "deadline": {"id": "d1", "deadline_time": "2026-12-02T03:00:00Z"}}
    outcome = raise_deadline_alert(context, "3 hours after it was queued", config=AlertConfig(), warehouse_conninfo="")
    alert = outcome.alert
    assert (alert.dag_id, alert.ds, alert.gate, alert.category) == ("tally_daily", "2026-12-01", "task:deadline",
                                                                     "deadline_missed")
    assert alert.title == "Run missed its deadline: tally_daily ds=2026-12-01"
    assert "3 hours after it was queued" in alert.summary and "manual__2026-12-02 is running" in alert.summary
    assert alert.links["runbook"].endswith("#run-missed-its-deadline")


def test_reconcile_is_triggered_by_the_marts_the_daily_gate_emits():
    daily, _ = _dag("tally_daily")
    reconcile, _ = _dag("tally_reconcile")
    emitted = {a.uri for a in daily.get_task("gate_mart").outlets}
    assert emitted == set(contract.MART_ASSETS.values()) and len(emitted) == len(contract.MARTS)
    from airflow.sdk.definitions.asset import AssetAll
    from airflow.sdk.definitions.timetables.assets import AssetTriggeredTimetable

    assert isinstance(reconcile.timetable, AssetTriggeredTimetable)  # no cron any more
    condition = reconcile.timetable.asset_condition
    assert isinstance(condition, AssetAll)  # all four marts of one ds
    assert {a.uri for a in condition.objects} == emitted


def test_reconcile_takes_the_ds_of_the_daily_run_that_triggered_it():
    from tally.airflow.tasks import triggering_ds

    def event(ds):
        return SimpleNamespace(extra={"ds": ds} if ds else {})

    events = {"marts.a": [event("2026-12-01")], "marts.b": [event("2026-12-02"), event(None)]}
    assert triggering_ds(events) == "2026-12-02"
    assert triggering_ds({}, datetime(2026, 11, 30, tzinfo=UTC)) == "2026-11-30"  # triggered with a logical date
    assert triggering_ds(None, None, datetime(2026, 12, 3, 6, tzinfo=UTC)) == "2026-12-02"
    with pytest.raises(ValueError, match="no ds"):
        triggering_ds(None)


def test_gate_tasks_do_not_dump_their_results_in_the_log():
    daily, _ = _dag("tally_daily")
    for task_id in ("land.gate_raw", "gate_curated", "gate_warehouse", "gate_mart"):
        assert daily.get_task(task_id).show_return_value_in_logs is False, task_id
