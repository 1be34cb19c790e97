"""The backfill methods of the REST client: the requests they send (Airflow 3's /api/v2/backfills
bodies and paths) and how they read the answers, through `responses` at the HTTP adapter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses

from tally.cli.airflow_api import AirflowClient, ApiError

BASE = "http://airflow.test:8080"
START, END = datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 6, tzinfo=UTC)


@pytest.fixture()
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{BASE}/auth/token", json={"access_token": "tok"})
        yield mock


def client() -> AirflowClient:
    return AirflowClient(BASE, "admin", "pw")


def test_create_backfill_posts_airflows_body_in_ds_order_one_at_a_time(api):
    api.post(f"{BASE}/api/v2/backfills", json={"id": 3, "dag_id": "tally_daily"})
    created = client().create_backfill("tally_daily", START, END, reprocess="failed", conf={"tally_backfill": True})
    assert created["id"] == 3
    sent = api.calls[-1].request
    assert sent.headers["Authorization"] == "Bearer tok"
    assert json.loads(sent.body) == {
        "dag_id": "tally_daily", "from_date": "2026-12-02T00:00:00+00:00", "to_date": "2026-12-06T00:00:00+00:00",
        "run_backwards": False, "dag_run_conf": {"tally_backfill": True}, "reprocess_behavior": "failed",
        "max_active_runs": 1}


def test_a_refused_backfill_is_an_api_error_with_airflows_detail(api):
    api.post(f"{BASE}/api/v2/backfills", status=409,
             json={"detail": "There is already a running backfill for dag tally_daily"})
    with pytest.raises(ApiError, match=r"backfill tally_daily failed \(409\): There is already a running") as exc:
        client().create_backfill("tally_daily", START, END)
    assert exc.value.status == 409
    api.post(f"{BASE}/api/v2/backfills/dry_run", status=422,
             json={"detail": [{"msg": "Backfill cannot be executed for future dates."}]})
    with pytest.raises(ApiError, match="future dates"):
        client().backfill_dry_run("tally_daily", START, END)


def test_unknown_reprocess_is_refused_before_sending():
    with pytest.raises(ValueError, match="none, failed, completed"):
        AirflowClient.backfill_body("tally_daily", START, END, reprocess="all")


def test_dry_run_returns_the_logical_dates_it_would_run(api):
    api.post(f"{BASE}/api/v2/backfills/dry_run", json={"backfills": [
        {"logical_date": "2026-12-03T00:00:00Z", "partition_key": None, "partition_date": None},
        {"logical_date": "2026-12-05T00:00:00Z", "partition_key": None, "partition_date": None}], "total_entries": 2})
    assert client().backfill_dry_run("tally_daily", START, END) == ["2026-12-03T00:00:00Z", "2026-12-05T00:00:00Z"]
    assert json.loads(api.calls[-1].request.body)["reprocess_behavior"] == "none"


def test_active_backfill_is_the_one_not_completed(api):
    api.get(f"{BASE}/api/v2/backfills", json={"backfills": [
        {"id": 1, "completed_at": "2026-12-01T00:00:00Z"}, {"id": 2, "completed_at": None}], "total_entries": 2})
    assert client().active_backfill("tally_daily")["id"] == 2
    assert [b["id"] for b in client().backfills("tally_daily")] == [1, 2]
    assert [b["id"] for b in client().backfills("tally_daily", active_only=True)] == [2]
    assert "dag_id=tally_daily" in api.calls[-1].request.url
    api.replace(responses.GET, f"{BASE}/api/v2/backfills",
                json={"backfills": [{"id": 1, "completed_at": "2026-12-01T00:00:00Z"}], "total_entries": 1})
    assert client().active_backfill("tally_daily") is None


def test_runs_between_pages_through_every_run(api):
    page1 = [{"dag_run_id": f"r{i}"} for i in range(100)]
    api.get(f"{BASE}/api/v2/dags/tally_daily/dagRuns", json={"dag_runs": page1, "total_entries": 101},
            match=[responses.matchers.query_param_matcher({"offset": "0"}, strict_match=False)])
    api.get(f"{BASE}/api/v2/dags/tally_daily/dagRuns", json={"dag_runs": [{"dag_run_id": "r100"}], "total_entries": 101},
            match=[responses.matchers.query_param_matcher({"offset": "100"}, strict_match=False)])
    runs = client().runs_between("tally_daily", START, END, run_type="backfill")
    assert [r["dag_run_id"] for r in runs] == [f"r{i}" for i in range(101)]
    url = api.calls[-1].request.url
    assert "run_type=backfill" in url and "logical_date_gte=2026-12-02T00%3A00%3A00%2B00%3A00" in url


@pytest.mark.parametrize("action", ["pause", "unpause", "cancel"])
def test_pause_unpause_cancel_put_to_the_backfill(api, action):
    api.put(f"{BASE}/api/v2/backfills/7/{action}", json={"id": 7, "is_paused": action != "unpause"})
    assert getattr(client(), f"{action}_backfill")(7)["id"] == 7
    assert api.calls[-1].request.method == "PUT"
