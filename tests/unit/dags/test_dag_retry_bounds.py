"""Bounded retries (issue 16): however many tries a task instance has behind it, the scheduler never
waits longer than the task's ``max_retry_delay`` before the next one.

Clearing a DAG run (the Airflow UI's *Clear*) keeps each task instance's try number and adds
``retries`` to it, so try numbers pile up over re-runs (10 after a few). With exponential backoff
and no ``max_retry_delay``, an extract at try 8 waited about an hour. The delay is computed here by
Airflow's own ``TaskInstance.next_retry_datetime`` on the DAG as the scheduler sees it (serialized
and deserialized: that is where ``retry_exponential_backoff=True`` becomes the multiplier 2.0).
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[3] / "dags"
DAG_FILES = ("tally_daily", "tally_events", "tally_reconcile", "tally_maintenance")
# The longest wait before any retry; extracts (a source's 503, an expired session) retry sooner.
LONGEST_WAIT = timedelta(minutes=10)
EXTRACT_WAIT = timedelta(minutes=5)
# Try numbers a task instance reaches after a few clears of the same run, and far beyond.
TRY_NUMBERS = (1, 8, 10, 30)


def _scheduler_dag(name: str):
    from airflow.serialization.serialized_objects import DagSerialization

    spec = importlib.util.spec_from_file_location(f"{name}_retry_bounds_under_test", DAGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return DagSerialization.from_dict(DagSerialization.to_dict(getattr(module, name)()))


@pytest.fixture(scope="module", params=DAG_FILES)
def dag(request):
    return _scheduler_dag(request.param)


def _wait_before_next_try(task, try_number: int) -> timedelta:
    from airflow.models.taskinstance import TaskInstance

    ti = TaskInstance(task=task, run_id="manual__2026-12-01", dag_version_id=None)
    ti.try_number = try_number
    ti.end_date = datetime(2026, 12, 2, tzinfo=UTC)
    return ti.next_retry_datetime() - ti.end_date


def test_every_retried_task_has_a_max_retry_delay(dag):
    unbounded = [t.task_id for t in dag.tasks if t.retries and not t.max_retry_delay]
    assert not unbounded, f"{dag.dag_id}: retried tasks without max_retry_delay: {unbounded}"


def test_no_retry_waits_long_however_many_tries_came_before(dag):
    retried = [t for t in dag.tasks if t.retries]
    assert retried, dag.dag_id
    too_long = {}
    for task in retried:
        extract = task.task_id.startswith("land.extract_") or task.task_id in ("land_events", "land")
        bound = EXTRACT_WAIT if extract else LONGEST_WAIT
        waits = {n: _wait_before_next_try(task, n) for n in TRY_NUMBERS}
        if any(wait > bound for wait in waits.values()):
            too_long[task.task_id] = {n: str(w) for n, w in waits.items()}
    assert not too_long, f"{dag.dag_id}: retry waits beyond the bound: {too_long}"


def test_backoff_still_grows_before_the_bound():
    """The bound caps the backoff; it does not replace it: an extract's second retry still waits
    longer than its first."""
    daily = _scheduler_dag("tally_daily")
    extract = daily.get_task("land.extract_erp_customers")
    assert extract.retry_exponential_backoff == 2.0
    assert _wait_before_next_try(extract, 1) < _wait_before_next_try(extract, 3) <= extract.max_retry_delay
