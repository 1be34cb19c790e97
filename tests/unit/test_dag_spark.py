"""tally_daily submits one Spark application per curated job, in dependency order, on spark_default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("tally_daily_spark_under_test", REPO / "dags" / "tally_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tally_daily()


def test_every_job_is_a_spark_submit_on_spark_default(dag):
    for job in JOBS:
        task = dag.get_task(f"spark_{job}")
        assert type(task).__name__ == "SparkSubmitOperator"
        assert task._conn_id == "spark_default"
        assert Path(task.application) == REPO / "spark_jobs" / f"{job}.py" and Path(task.application).is_file()
        args = task.application_args
        assert args[args.index("--reporting-currency") + 1] == "{{ reporting_currency() }}"
        assert args[args.index("--ds") + 1] == "{{ data_interval_start | ds }}"


def test_jobs_run_in_dependency_order(dag):
    def downstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).downstream_task_ids

    assert downstream("spark_conformed_customers") == {"spark_opportunity_enrichment"}
    assert downstream("spark_opportunity_enrichment") == {"spark_rep_rankings", "spark_account_engagement"}
    assert downstream("spark_rep_rankings") == downstream("spark_account_engagement") == {"gate_curated"}
    assert "spark_account_engagement" in downstream("land_events")
    assert dag.get_task("spark_conformed_customers").upstream_task_ids >= {
        "land.gate_raw", "land.extract_erp_customers", "land.extract_salesforce_Account"}


def test_reporting_currency_renders_from_the_environment(dag, monkeypatch):
    template = dag.get_template_env().from_string("{{ reporting_currency() }}")
    monkeypatch.delenv("TALLY_REPORTING_CURRENCY", raising=False)
    assert template.render(**dag.user_defined_macros) == "USD"
    monkeypatch.setenv("TALLY_REPORTING_CURRENCY", "EUR")
    assert template.render(**dag.user_defined_macros) == "EUR"
