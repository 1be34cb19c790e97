"""A warehouse (or Airflow API) that cannot be reached is one line and exit 6, never a traceback,
and the line never shows the password: a wrong host or port in ``--dsn``, or in the profile."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from tally.cli import app
from tally.cli.params import UNREACHABLE_EXIT, unreachable
from tally.core import profile
from tally.core.config import PostgresConn
from tally.core.profile import AirflowApi, Profile

SECRET = "s3cr3t-pw"


@pytest.fixture()
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def runner(monkeypatch, tmp_path) -> CliRunner:
    monkeypatch.setenv("TALLY_HOME", str(tmp_path / "home"))
    for name in ("TALLY_PROFILE", "TALLY_WAREHOUSE_DSN"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


@pytest.fixture()
def unreachable_profile(tmp_path, monkeypatch, closed_port) -> int:
    """A profile whose warehouse and Airflow API are both on the closed port."""
    path = tmp_path / "profile.json"
    profile.write(Profile(warehouse=PostgresConn("127.0.0.1", closed_port, "tally", SECRET, "warehouse"),
                          lake=str(tmp_path / "lake"),
                          airflow=AirflowApi(f"http://127.0.0.1:{closed_port}", "admin", SECRET)), path)
    monkeypatch.setenv("TALLY_PROFILE", str(path))
    return closed_port


def _one_line_exit_6(result, expected: str) -> None:
    assert result.exit_code == UNREACHABLE_EXIT == 6, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expected}"), result.stderr
    assert SECRET not in result.output


@pytest.mark.parametrize("argv", [["alerts", "list"], ["alerts", "show", "1"], ["alerts", "ack", "1", "--by", "me"]])
def test_a_wrong_dsn_port_is_one_line_and_exit_6(runner, closed_port, argv):
    dsn = f"postgresql://tally:{SECRET}@127.0.0.1:{closed_port}/warehouse"
    result = runner.invoke(app, [*argv, "--dsn", dsn])
    _one_line_exit_6(result, f"cannot reach the warehouse at 127.0.0.1:{closed_port} (")


def test_a_host_that_does_not_resolve_is_named(runner):
    result = runner.invoke(app, ["alerts", "list", "--dsn", f"postgresql://u:{SECRET}@nohost.invalid:5432/db"])
    _one_line_exit_6(result, "cannot reach the warehouse at nohost.invalid")


def test_reconcile_with_the_profiles_warehouse_unreachable(runner, unreachable_profile):
    result = runner.invoke(app, ["reconcile", "--ds", "2026-12-01"])
    _one_line_exit_6(result, f"cannot reach the warehouse at 127.0.0.1:{unreachable_profile} (")


def test_alerts_with_the_profiles_warehouse_unreachable(runner, unreachable_profile):
    result = runner.invoke(app, ["alerts", "list", "--format", "json"])
    _one_line_exit_6(result, f"cannot reach the warehouse at 127.0.0.1:{unreachable_profile} (")


def test_run_with_airflow_unreachable(runner, unreachable_profile):
    from datetime import UTC, datetime, timedelta

    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()  # the daily run's own ds: extracted
    result = runner.invoke(app, ["run", "--ds", yesterday])
    _one_line_exit_6(result, f"cannot reach Airflow's API at http://127.0.0.1:{unreachable_profile} (")


def test_other_database_errors_are_not_called_unreachable():
    import psycopg

    assert unreachable(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")) is None
    assert unreachable(psycopg.errors.UndefinedTable('relation "ops.alerts" does not exist')) is None
    assert unreachable(ValueError("no")) is None
