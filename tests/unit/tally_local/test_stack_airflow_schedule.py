"""The local stack pauses the DAGs whose schedule is off (issue 15: they were shown as scheduled
but never ran, because the local scheduler does not create runs unless TALLY_AIRFLOW_SCHEDULE)."""

from __future__ import annotations

import pytest

from tally_local.stack import airflow

STATE = {"postgres": {"port": 5432, "user": "u", "password": "p"},
         "airflow": {"port": 8080, "secret_key": "s", "jwt_secret": "j"}}


@pytest.fixture()
def env(monkeypatch, tmp_path):
    monkeypatch.setattr(airflow, "connections", lambda state: {})
    monkeypatch.setattr(airflow, "spark_home", lambda: "/spark")

    def make(value: str | None) -> dict[str, str]:
        if value is None:
            monkeypatch.delenv("TALLY_AIRFLOW_SCHEDULE", raising=False)
        else:
            monkeypatch.setenv("TALLY_AIRFLOW_SCHEDULE", value)
        return airflow.environment(STATE, tmp_path)

    return make


@pytest.mark.parametrize("value", [None, "false", "0", "no"])
def test_schedule_off_means_dags_are_created_paused(env, value):
    e = env(value)
    assert e["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "False"
    assert e["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "True"


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_schedule_on_means_dags_run_by_themselves(env, value):
    e = env(value)
    assert e["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"
    assert e["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
