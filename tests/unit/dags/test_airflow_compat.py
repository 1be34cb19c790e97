"""tally.airflow.compat: the work-around for apache/airflow#70368 (clearing a run of a DAG with a
queued-at deadline fails), applied only to an Airflow that has the bug, and computing the moved
deadline from the JSON-stored interval with Airflow's own decoder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tally.airflow import compat


def test_install_replaces_the_buggy_function_once_and_only_when_it_is_buggy(monkeypatch):
    from airflow.models import taskinstance

    def buggy(dagrun, new_queued_at, session):  # the 3.3 code's shape
        return timedelta(seconds=deadline_alert.interval)  # noqa: F821

    monkeypatch.setattr(taskinstance, "_recalculate_dagrun_queued_at_deadlines", buggy)
    assert compat.install() == ["apache/airflow#70368"]
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is compat.recalculate_queued_at_deadlines
    assert compat.install() == []  # applied once

    def fixed(dagrun, new_queued_at, session):  # an Airflow with the upstream fix is left alone
        return None

    monkeypatch.setattr(taskinstance, "_recalculate_dagrun_queued_at_deadlines", fixed)
    assert compat.install() == [] and taskinstance._recalculate_dagrun_queued_at_deadlines is fixed


def test_the_deadline_moves_with_the_new_queued_time_whatever_the_interval_encoding():
    from airflow.sdk.serde import serialize

    from dags.tally_daily import DEADLINE

    queued = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)
    rows = []
    for encoded in (serialize(DEADLINE), DEADLINE.total_seconds()):  # 3.3's JSON, and the old float
        deadline = SimpleNamespace(deadline_time=None)
        alert = SimpleNamespace(reference={"reference_type": "DagRunQueuedAtDeadline"}, interval=encoded,
                                callback_def=serialize(None))
        rows.append(deadline)
        session = SimpleNamespace(execute=lambda _stmt, d=deadline, a=alert: SimpleNamespace(all=lambda: [(d, a)]))
        compat.recalculate_queued_at_deadlines(SimpleNamespace(id=1), queued, session)
    assert [d.deadline_time for d in rows] == [queued + timedelta(hours=3)] * 2


@pytest.fixture(autouse=True)
def _dags_on_path(monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3]))
    yield
    sys.modules.pop("dags.tally_daily", None)
