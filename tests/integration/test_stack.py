"""The embedded stack: status, idempotent up, the env file, and the CLI over it."""

from __future__ import annotations

import os
import stat

import pytest

pytestmark = pytest.mark.integration


def test_every_service_is_healthy_and_up_twice_is_harmless(stack):
    before = {s.name: s.pid for s in stack.status() if not s.name.startswith("airflow")}
    assert all(stack.status()[i].healthy for i in range(4)), stack.status()
    stack.up(progress=lambda _: None, with_airflow=False)
    after = {s.name: s.pid for s in stack.status() if not s.name.startswith("airflow")}
    assert before == after  # nothing restarted


def test_state_files_hold_secrets_privately(stack):
    for name in ("stack.json", "env.sh", "profile.json"):
        mode = stat.S_IMODE(os.stat(stack.home / name).st_mode)
        assert mode == 0o600, name
    env = (stack.home / "env.sh").read_text()
    assert "AIRFLOW_CONN_TALLY_WAREHOUSE" in env and "AIRFLOW__CORE__EXECUTOR='LocalExecutor'" in env


def test_the_profile_is_the_stack_as_the_product_reads_it(stack):
    from tally.core import profile

    read = profile.load(profile.profile_path(stack.home))
    assert read == stack.profile()
    assert read.resources().warehouse == stack.postgres("warehouse")


def test_cli_status_reports_the_stack(stack):
    from typer.testing import CliRunner

    from tally.cli import app

    result = CliRunner().invoke(app, ["status"], env={"TALLY_HOME": str(stack.home), "COLUMNS": "200"})
    assert "postgres" in result.output and "salesforce simulator" in result.output
    assert "healthy" in result.output
