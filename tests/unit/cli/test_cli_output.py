"""Output for people and for scripts (issue 15, item 4): tables that are not cut when stdout is not
a terminal, URLs and paths whole, and ``--format json|tsv`` on `tally status` and `tally alerts list`."""

from __future__ import annotations

import json
import types
from contextlib import nullcontext
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tally.cli import app, output
from tally.core.config import PostgresConn
from tally.core.profile import AirflowApi, Profile

LONG_HOST = "airflow-ui.on-call.example-company-with-a-long-name.internal"
LONG_URL = f"https://{LONG_HOST}:18080/dags/tally_daily/grid?dag_run_id=scheduled__2026-12-01T00%3A00%3A00"
PASSWORD_FILE = "/srv/tally/deployments/production-eu-west-1/airflow/simple_auth_manager_passwords.json"
PASSWORD = "s3cret-never-printed"


@pytest.fixture()
def runner(monkeypatch) -> CliRunner:
    monkeypatch.delenv("COLUMNS", raising=False)  # stdout is a pipe: the console must not fall back to 80
    return CliRunner()


# -- tally status -------------------------------------------------------------------------------
@pytest.fixture()
def stack(monkeypatch, tmp_path):
    from tally_local.stack import manager

    home = tmp_path / "a-rather-long-state-directory-name" / "for-a-tally-stack" / ".tally"
    home.mkdir(parents=True)
    (home / "stack.json").write_text(json.dumps({"airflow": {"port": 18080}}))
    monkeypatch.setenv("TALLY_HOME", str(home))
    services = [
        manager.ServiceStatus("postgres", True, 101, "127.0.0.1:54321", "databases: warehouse, erp, airflow"),
        manager.ServiceStatus("s3 (moto)", True, 102, "http://127.0.0.1:50001", "bucket tally-lake"),
        manager.ServiceStatus("airflow api-server", False, None, LONG_URL),
    ]
    profile = Profile(
        warehouse=PostgresConn("127.0.0.1", 54321, "tally", PASSWORD, "warehouse"),
        lake=str(home),
        airflow=AirflowApi(LONG_URL, "admin", PASSWORD, password_file=PASSWORD_FILE),
    )
    monkeypatch.setattr(manager.Stack, "status", lambda self: services)
    monkeypatch.setattr(manager.Stack, "profile", lambda self: profile)
    return home


def test_status_table_is_not_cut_when_not_a_terminal(runner, stack):
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1  # the api-server is down
    out = result.stdout
    for header in ("service", "health", "pid", "address", "notes"):
        assert header in out
    url_lines = [line for line in out.splitlines() if LONG_URL in line]
    assert len(url_lines) == 2, out  # the service's address and the UI line, each whole on one line
    assert f"Airflow UI: {LONG_URL}  login: admin, password in {PASSWORD_FILE}" in out
    assert f"Tally local stack in {stack}" in out
    assert "databases: warehouse, erp, airflow" in out and "…" not in out
    assert PASSWORD not in result.output


def test_status_json_is_one_document_without_the_password(runner, stack):
    result = runner.invoke(app, ["status", "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["healthy"] is False and doc["home"] == str(stack)
    assert [s["service"] for s in doc["services"]] == ["postgres", "s3 (moto)", "airflow api-server"]
    assert doc["services"][0] == {
        "service": "postgres",
        "healthy": True,
        "pid": 101,
        "address": "127.0.0.1:54321",
        "notes": "databases: warehouse, erp, airflow",
    }
    assert doc["airflow"] == {"url": LONG_URL, "user": "admin", "password_file": PASSWORD_FILE}
    assert PASSWORD not in result.output


def test_status_tsv_is_a_header_and_one_line_per_service(runner, stack):
    result = runner.invoke(app, ["status", "--format", "TSV"])
    lines = result.stdout.splitlines()
    assert lines[0] == "service\thealthy\tpid\taddress\tnotes"
    assert lines[1] == "postgres\ttrue\t101\t127.0.0.1:54321\tdatabases: warehouse, erp, airflow"
    assert lines[3] == f"airflow api-server\tfalse\t\t{LONG_URL}\t"
    assert len(lines) == 4


# -- tally alerts list --------------------------------------------------------------------------
LONG_GATE = "gate_warehouse.salesforce.OpportunityHistory.a_gate_name_long_enough_to_be_cut"
ROWS = [
    {
        "id": 7,
        "created_at": datetime(2026, 12, 2, 6, 5, tzinfo=UTC),
        "dag_id": "tally_daily",
        "ds": "2026-12-01",
        "gate": LONG_GATE,
        "category": "gate",
        "title": "t",
        "summary": "raw.erp.payments: 3 of 7 checks failed\ton amount",
        "task_id": "gate_raw",
        "run_id": "r1",
        "payload": {},
        "occurrences": 2,
        "last_run_id": "r1",
        "delivery": {"slack": {"status": "sent"}, "webhook": {"status": "failed", "error": "HTTP 500"}},
        "last_seen_at": datetime(2026, 12, 2, 7, 0, tzinfo=UTC),
        "acknowledged_at": None,
        "acknowledged_by": None,
        "note": None,
        "resolved_at": None,
        "resolution": None,
    },
    {
        "id": 6,
        "created_at": datetime(2026, 12, 1, 6, 5, tzinfo=UTC),
        "dag_id": "tally_daily",
        "ds": "2026-11-30",
        "gate": "gate_mart",
        "category": "gate",
        "title": "t",
        "summary": "mart totals differ",
        "task_id": "gate_mart",
        "run_id": "r0",
        "payload": {},
        "occurrences": 1,
        "last_run_id": "r0",
        "delivery": {},
        "last_seen_at": datetime(2026, 12, 1, 6, 5, tzinfo=UTC),
        "acknowledged_at": datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        "acknowledged_by": "dana",
        "note": "re-ran\nthe load",
        "resolved_at": datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        "resolution": "resolved: gate_mart passed in run r1 for ds 2026-11-30",
    },
]


@pytest.fixture()
def alerts(monkeypatch):
    from tally.alerts import store
    from tally.cli import alerts as alerts_cli

    seen = {}

    def list_alerts(conn, *, include_acknowledged=False, ds=None, limit=50):
        seen.update(include_acknowledged=include_acknowledged, ds=ds, limit=limit)
        return ROWS

    monkeypatch.setattr(alerts_cli, "_alerts_conn", lambda dsn: nullcontext(None))
    monkeypatch.setattr(store, "list_alerts", list_alerts)
    return seen


def test_alerts_table_keeps_every_column_when_not_a_terminal(runner, alerts):
    result = runner.invoke(app, ["alerts", "list", "--all"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "raised (UTC)" in line)
    for col in ("id", "dag", "ds", "gate / task", "what", "seen", "delivery", "ack"):
        assert col in header
    assert LONG_GATE in result.stdout and "2026-12-02 06:05" in result.stdout
    assert "resolved: gate_mart passed in run r1 for ds 2026-11-30" in result.stdout  # a resolved alert says so
    assert "…" not in result.stdout


def test_alerts_json(runner, alerts):
    result = runner.invoke(
        app, ["alerts", "list", "--all", "--ds", "2026-12-01", "--limit", "5", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert alerts == {"include_acknowledged": True, "ds": "2026-12-01", "limit": 5}
    doc = json.loads(result.stdout)
    first, second = doc["alerts"]
    assert (
        first["id"] == 7 and first["gate"] == LONG_GATE and first["created_at"] == "2026-12-02T06:05:00+00:00"
    )
    assert first["delivery"]["webhook"] == {"status": "failed", "error": "HTTP 500"}
    assert second["acknowledged_by"] == "dana" and second["note"] == "re-ran\nthe load"
    assert "payload" not in first


def test_alerts_tsv_escapes_tabs_and_newlines(runner, alerts):
    result = runner.invoke(app, ["alerts", "list", "--all", "--format", "tsv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == [
        "id",
        "created_at",
        "dag_id",
        "ds",
        "gate",
        "category",
        "summary",
        "occurrences",
        "last_seen_at",
        "delivery",
        "acknowledged_at",
        "acknowledged_by",
        "note",
        "resolved_at",
        "resolution",
    ]
    assert len(lines) == 3 and all(len(line.split("\t")) == 15 for line in lines)
    first, second = (dict(zip(lines[0].split("\t"), line.split("\t"), strict=True)) for line in lines[1:])
    assert first["summary"] == "raw.erp.payments: 3 of 7 checks failed\\ton amount"
    assert first["delivery"] == "slack:sent,webhook:failed" and first["acknowledged_at"] == ""
    assert second["note"] == "re-ran\\nthe load" and second["delivery"] == ""


def test_no_alerts_in_json_is_still_a_document(runner, monkeypatch, alerts):
    from tally.alerts import store

    monkeypatch.setattr(store, "list_alerts", lambda conn, **kw: [])
    assert json.loads(runner.invoke(app, ["alerts", "list", "--format", "json"]).stdout) == {"alerts": []}
    assert runner.invoke(app, ["alerts", "list", "--format", "tsv"]).stdout.startswith("id\tcreated_at\t")


# -- the console --------------------------------------------------------------------------------
def test_the_console_is_wide_only_off_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert output.console.width >= output.WIDE  # pytest captures stdout: not a terminal
    monkeypatch.setenv("COLUMNS", "100")
    assert output.console.width == 100  # an explicit width still wins


def test_a_narrow_explicit_width_folds_text_and_keeps_urls_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    table = output.new_table(None, [output.Col("what"), output.Col("address", kind="url")])
    table.add_row("a long explanation of what went wrong in words", "http://127.0.0.1:18080/a/b")
    with output.console.capture() as cap:
        output.console.print(table)
    text = cap.get()
    assert "http://127.0.0.1:18080/a/b" in text and "…" not in text
    assert "explanation" in text and "wrong" in text


# -- tally reconcile --full ---------------------------------------------------------------------
@pytest.fixture()
def full_reconcile(monkeypatch):
    from tally.cli import common
    from tally.reconcile import full

    def reconcile_table(erp, lake, warehouse, dataset, options, progress=None):
        found = {"missing": 2, "extra": 0, "stale": 1, "unversioned": 0, "in_flight": 3, "quarantined": 0}
        return full.TableReport(
            dataset.dataset_id,
            "differences",
            cutoff="2026-12-02T00:00:00+00:00",
            found=found,
            samples={"missing": [41, 42]},
            left={"missing": 2, "stale": 1},
            source_rows=1200,
            notes=["a note\twith a tab"],
            seconds={"total": 0.25},
        )

    class Profile:
        @staticmethod
        def resources():
            return types.SimpleNamespace(erp=None, lake=None, warehouse=None)

    monkeypatch.setattr(common, "require_profile", lambda: Profile)
    monkeypatch.setattr(full, "reconcile_table", reconcile_table)


def test_full_reconcile_json_and_tsv(runner, full_reconcile):
    result = runner.invoke(
        app,
        [
            "reconcile",
            "--full",
            "--no-heal",
            "--table",
            "customers",
            "--table",
            "erp.payments",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 1, result.output  # differences are left
    doc = json.loads(result.stdout)
    assert doc["problems_left"] == 6
    first = doc["tables"][0]
    assert first["table"] == "erp.customers" and first["status"] == "differences" and first["missing"] == 2
    assert first["samples"] == {"missing": [41, 42]} and first["left"] == 3 and first["in_flight"] == 3
    result = runner.invoke(
        app, ["reconcile", "--full", "--no-heal", "--table", "customers", "--format", "tsv"]
    )
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["table", "status", "source_rows"] and len(lines) == 2
    assert lines[1].startswith(
        "erp.customers\tdifferences\t1200\t2026-12-02T00:00:00+00:00\t2\t0\t1\t0\t0\t3\t0\t0\t3"
    )
