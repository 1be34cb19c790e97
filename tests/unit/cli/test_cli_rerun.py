"""`tally run` re-runs a ds as a new DAG run (issue 16, item 3): clearing the old run would keep its
task instances' try numbers, which pile up over re-runs; a new run starts every task at try 1."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import typer

from tally.cli.run import fresh_run

START, END = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)


class FakeAirflow:
    """The REST calls `fresh_run` makes, recorded; ``runs`` are the DAG runs at the logical date."""

    base_url, timeout = "http://127.0.0.1:8080", 30

    def __init__(self, runs: list[dict]) -> None:
        self.runs = runs
        self.calls: list[tuple] = []
        self.http = SimpleNamespace(delete=self._delete)

    def runs_at(self, dag_id, logical_date):
        assert logical_date == START
        return list(self.runs)

    def _delete(self, url, timeout):
        self.calls.append(("DELETE", url))
        self.runs = [r for r in self.runs if not url.endswith(r["dag_run_id"].replace(":", "%3A").replace("+", "%2B"))]
        return SimpleNamespace(status_code=204, text="")

    def trigger(self, dag_id, start, end, run_id=None, conf=None):
        assert not self.runs, "a second run at the same logical date is refused by Airflow"
        self.calls.append(("POST", dag_id, start, end, run_id))
        self.runs.append({"dag_run_id": run_id, "state": "queued"})
        return self.runs[-1]

    def clear(self, dag_id, run_id):  # pragma: no cover - the old way, must not be used
        raise AssertionError("a cleared run keeps its try numbers")


def test_a_first_run_of_the_ds_is_simply_triggered():
    client = FakeAirflow([])
    assert fresh_run(client, "tally_daily", START, END, "tally__2026-12-01__2") == "tally__2026-12-01__2"
    assert client.calls == [("POST", "tally_daily", START, END, "tally__2026-12-01__2")]


@pytest.mark.parametrize("state", ["success", "failed"])
def test_a_finished_run_is_replaced_by_a_new_one_not_cleared(state):
    old = "manual__2026-12-01T00:00:00+00:00"
    client = FakeAirflow([{"dag_run_id": old, "state": state}])
    run_id = fresh_run(client, "tally_daily", START, END, "tally__2026-12-01__2")
    assert run_id == "tally__2026-12-01__2"
    assert client.calls == [
        ("DELETE", "http://127.0.0.1:8080/api/v2/dags/tally_daily/dagRuns/manual__2026-12-01T00%3A00%3A00%2B00%3A00"),
        ("POST", "tally_daily", START, END, "tally__2026-12-01__2"),
    ]
    assert [r["dag_run_id"] for r in client.runs] == ["tally__2026-12-01__2"]


@pytest.mark.parametrize("state", ["running", "queued"])
def test_a_run_in_progress_is_left_alone(state, capsys):
    client = FakeAirflow([{"dag_run_id": "tally__2026-12-01__1", "state": state}])
    with pytest.raises(typer.Exit) as exc:
        fresh_run(client, "tally_daily", START, END, "tally__2026-12-01__2")
    assert exc.value.exit_code == 1
    assert client.calls == []
    out = capsys.readouterr().out
    assert f"tally_daily for 2026-12-01 is still {state}" in out and "tally__2026-12-01__1" in out
