"""`tally backfill` through the Typer app: usage errors are one line and exit 2; a range with a ds
that cannot be built exactly is refused from a real local lake, before Airflow or the warehouse
is contacted (both are on a closed port here: reaching either would be exit 6)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from tally import catalog, contract
from tally.backfill import plan
from tally.cli import app
from tally.core import profile
from tally.core.config import PostgresConn
from tally.core.profile import AirflowApi, Profile
from tally.lake import Lake
from tally.lake.writer import land

TODAY = plan.utc_today()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.fixture()
def deployment(tmp_path, monkeypatch) -> Lake:
    """A profile whose lake is a real directory and whose warehouse and Airflow are unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TALLY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TALLY_WAREHOUSE_DSN", raising=False)
    path = tmp_path / "profile.json"
    profile.write(Profile(warehouse=PostgresConn("127.0.0.1", port, "tally", "pw", "warehouse"),
                          lake=str(tmp_path / "lake"), airflow=AirflowApi(f"http://127.0.0.1:{port}", "admin", "pw")),
                  path)
    monkeypatch.setenv("TALLY_PROFILE", str(path))
    lake = Lake(str(tmp_path / "lake"))
    for ds in plan.days(day(-6), day(-3)):  # every raw dataset landed on these days…
        for dataset_id in contract.RAW_DATASETS:
            if ds == day(-4) and dataset_id == "erp.invoices":  # …but one
                continue
            land(lake, catalog.get(dataset_id), ds, iter(()), source_count=0, watermark={}, mode="incremental")
    return lake


def invoke(*args: str):
    return CliRunner().invoke(app, ["backfill", *args])


@pytest.mark.parametrize(("args", "expected"), [
    (["--start", "2026-13-01", "--end", "2026-12-02"], "--start must be a real date as YYYY-MM-DD"),
    (["--start", "2026-12-01", "--end", "yesterday"], "--end must be a date as YYYY-MM-DD"),
    (["--start", "2026-12-05", "--end", "2026-12-01"], "--start (2026-12-05) must not be after --end (2026-12-01)"),
    (["--start", "2026-12-01", "--end", "2026-12-02", "--reprocess", "all"], "--reprocess"),
    (["--end", "2026-12-02"], "--start"),
])
def test_usage_errors_are_one_line_and_exit_2(deployment, args, expected):
    result = invoke(*args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert "Traceback" not in result.output


def test_refused_days_are_each_one_line_and_nothing_is_contacted(deployment):
    result = invoke("--start", day(-9), "--end", day(-3))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "cannot reach" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    refused = [line for line in lines if line.startswith("refused: ")]
    assert [line.split()[1] for line in refused] == [f"ds={day(-9)}", f"ds={day(-8)}", f"ds={day(-7)}", f"ds={day(-4)}"]
    assert (f"refused: ds={day(-9)} cannot be built exactly: salesforce.Opportunity and 12 other raw datasets hold "
            f"only current state and the lake has no raw partition for that day (the lake holds {day(-6)} … {day(-5)}, "
            f"{day(-3)}); records changed since would be missing. Backfill from {day(-6)}") in refused[0]
    assert "missing: erp.invoices." in refused[3] and f"backfill from {day(-3)}" in refused[3]
    assert lines[-1] == "error: 4 of 7 ds cannot be built exactly; nothing was created (docs/backfill.md)"


def test_a_day_that_has_not_ended_is_refused(deployment):
    result = invoke("--start", day(-1), "--end", day(0))
    assert result.exit_code == 2
    assert f"refused: ds={day(0)} cannot be built yet: its day has not ended" in result.stderr
    assert f"ds={day(-1)}" not in result.stderr  # the daily run's own ds is extracted


def test_a_buildable_range_goes_on_to_airflow(deployment):
    """Past the plan, the command asks Airflow: here unreachable, so one line and exit 6."""
    result = invoke("--start", day(-6), "--end", day(-5), "--dry-run")
    assert result.exit_code == 6, (result.output, result.exception)
    assert result.stderr.strip().startswith("error: cannot reach Airflow's API at http://127.0.0.1:")


# -- past the plan: Airflow's API answered by `responses` at the HTTP adapter ----------------------
@pytest.fixture()
def airflow(deployment):
    import json

    import responses

    base = json.loads(profile.profile_path().read_text())["airflow"]["url"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(f"{base}/auth/token", json={"access_token": "tok"})
        mock.get(f"{base}/api/v2/dags/tally_daily", json={"dag_id": "tally_daily"})
        mock.patch(f"{base}/api/v2/dags/tally_daily", json={"dag_id": "tally_daily", "is_paused": False})
        mock.get(f"{base}/api/v2/dags/tally_daily/dagRuns", json={"dag_runs": [
            {"dag_run_id": "scheduled__x", "logical_date": f"{day(-5)}T00:00:00Z", "state": "success",
             "run_type": "scheduled", "queued_at": "2026-01-01T00:00:00Z"}], "total_entries": 1})
        yield base, mock


def test_dry_run_prints_the_plan_from_airflows_dry_run_and_creates_nothing(airflow):
    import json

    base, mock = airflow
    mock.get(f"{base}/api/v2/backfills", json={"backfills": [], "total_entries": 0})
    mock.post(f"{base}/api/v2/backfills/dry_run", json={"backfills": [
        {"logical_date": f"{day(-6)}T00:00:00Z", "partition_key": None, "partition_date": None}], "total_entries": 1})
    result = CliRunner().invoke(app, ["backfill", "--start", day(-6), "--end", day(-5), "--dry-run"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.output, result.exception)
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in result.stdout.splitlines() if line.count("│") >= 5}
    assert rows[day(-6)] == ["lake", "·", "run"]
    assert rows[day(-5)] == ["lake", "success (scheduled)", "skip: it has a success run (--reprocess failed)"]
    assert "1 ds would run in 1 backfill(s)" in result.stdout
    posts = [c.request for c in mock.calls if c.request.method in ("POST", "PUT", "PATCH")]
    assert [p.url.removeprefix(base) for p in posts] == ["/auth/token", "/api/v2/backfills/dry_run"]
    body = json.loads(posts[-1].body)
    assert body["dag_run_conf"] == {"tally_backfill": True}
    assert (body["reprocess_behavior"], body["max_active_runs"], body["run_backwards"]) == ("failed", 1, False)
    assert (body["from_date"], body["to_date"]) == (f"{day(-6)}T00:00:00+00:00", f"{day(-5)}T00:00:00+00:00")


def test_an_active_backfill_is_attached_to_and_ctrl_c_leaves_it_running(airflow):
    base, mock = airflow
    active = {"id": 7, "dag_id": "tally_daily", "from_date": f"{day(-6)}T00:00:00Z", "to_date": f"{day(-3)}T00:00:00Z",
              "created_at": "2026-12-08T00:10:00Z", "completed_at": None, "is_paused": False}
    mock.get(f"{base}/api/v2/backfills", json={"backfills": [active], "total_entries": 1})

    def interrupt(request):
        raise KeyboardInterrupt

    mock.add_callback("GET", f"{base}/api/v2/backfills/7", callback=interrupt)
    result = CliRunner().invoke(app, ["backfill", "--start", day(-6), "--end", day(-5)], env={"COLUMNS": "200"})
    assert result.exit_code == 130, (result.output, result.exception)
    out = " ".join(result.stdout.split())
    assert f"Attaching to backfill #7 ({day(-6)} … {day(-3)}" in out
    assert "Interrupted: backfill #7 keeps running in Airflow" in out
    assert f"Watch it again: tally backfill --start {day(-6)} --end {day(-5)} (the same" in out and "--cancel" in out and "PUT /api/v2/backfills/7/cancel" in out
    assert not [c for c in mock.calls if c.request.method == "POST" and "backfills" in c.request.url]


def test_airflow_refusing_the_backfill_is_one_line_and_exit_1(airflow):
    base, mock = airflow
    mock.get(f"{base}/api/v2/backfills", json={"backfills": [], "total_entries": 0})
    mock.post(f"{base}/api/v2/backfills/dry_run", status=422,
              json={"detail": [{"msg": "Value error, Backfill cannot be executed for future dates."}]})
    result = CliRunner().invoke(app, ["backfill", "--start", day(-6), "--end", day(-5), "--dry-run"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr.strip() == ("error: backfill dry run tally_daily failed (422): Value error, Backfill cannot "
                                     "be executed for future dates.")


def test_tally_run_names_the_later_landed_days_a_re_landing_makes_stale(deployment):
    from tally.cli.run import later_landed_days

    prof = profile.load()
    # days -6, -5 and -3 are landed by every raw dataset (day -4 lacks erp.invoices)
    assert later_landed_days(prof, day(-7)) == [day(-6), day(-5), day(-3)]
    assert later_landed_days(prof, day(-5)) == [day(-3)]
    assert later_landed_days(prof, day(-3)) == []


def test_tally_run_of_a_past_day_reuses_the_landed_day_or_refuses(deployment):
    from tally.cli.params import InputError
    from tally.cli.run import past_day_conf

    prof = profile.load()
    assert past_day_conf(prof, day(-1)) is None  # the daily run's own ds: extracted
    assert past_day_conf(prof, day(-5)) == {"tally_backfill": True}  # landed on the day: rebuilt from the lake
    with pytest.raises(InputError, match=f"ds={day(-4)} cannot be built exactly: .*missing: erp.invoices"):
        past_day_conf(prof, day(-4))
    with pytest.raises(InputError, match=f"ds={day(-10)} cannot be built exactly"):
        past_day_conf(prof, day(-10))
    result = CliRunner().invoke(app, ["run", "--ds", day(-10)])  # one line, exit 2, nothing triggered
    assert result.exit_code == 2 and f"ds={day(-10)} cannot be built exactly" in result.output
