"""Alerts without services: what an alert says, its payloads, config, and the DAG wiring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tally.alerts import channels
from tally.alerts.config import (
    AlertConfig,
    SlackConfig,
    SmtpConfig,
    WebhookConfig,
    from_env,
    redact,
    redact_url,
)
from tally.alerts.model import (
    CATEGORIES,
    failure_alert,
    failure_alerts,
    gate_alert,
    gate_results_of,
    task_alert,
    task_category,
)
from tally.core.errors import DataProblem
from tally.gates.raw import schema_check
from tally.quality.result import GateResult

REPO = Path(__file__).resolve().parents[3]
DS = "2026-01-05"
SECRET_URL = "https://hooks.slack.example/services/T0001/B0002/s3cr3tT0k3nValue"


def count_result(observed: int = 998, expected: int = 1000) -> GateResult:
    """A raw gate result shaped as ``validate_parquet`` returns it (row count and a duplicate key)."""
    return GateResult(
        suite="raw.salesforce.Opportunity", hop="raw", dataset="salesforce.Opportunity", success=False,
        evaluated=6, failed=2, run_at="2026-01-06T00:10:00+00:00", target="lake raw/salesforce/Opportunity/ds=…",
        parameters={"source_count": expected},
        failures=[
            {"expectation": "expect_table_row_count_to_equal", "column": None, "observed": observed,
             "expected": expected, "sample": [], "note": "Reconciliation: every row the source counted landed."},
            {"expectation": "expect_column_values_to_be_unique", "column": "Id", "observed": 2, "expected": 0,
             "condition": "unique", "element_count": observed, "unexpected_count": 2, "unexpected_percent": 0.2,
             "key": ["Id"], "sample": [{"key": {"Id": "006000000000001AAA"}, "values": {}}] * 2},
        ],
    )


def test_gate_alert_says_what_where_observed_expected_and_links():
    alert = gate_alert("tally_daily", DS, [count_result()], task_id="land.gate_raw",
                       run_id="scheduled__2026-01-05", try_number=1, log_url="http://airflow/log",
                       data_docs_url="file:///tally/data_docs/index.html#{suite}", runbook_url="docs/runbook.md")
    assert alert.gate == "land.gate_raw"  # one alert per gate task, whatever failed in it
    assert alert.category == "raw_gate" and alert.hop == "raw" and alert.dataset == "salesforce.Opportunity"
    assert alert.suites == ["raw.salesforce.Opportunity"]
    assert "2 of 6 checks failed" in alert.title and "ds=2026-01-05" in alert.title
    count, dup = alert.failures
    assert (count["observed"], count["expected"]) == (998, 1000)
    assert dup["sample"] == [{"key": {"Id": "006000000000001AAA"}, "values": {}}] * 2 and dup["column"] == "Id"
    assert alert.links == {"runbook": "docs/runbook.md#raw-gate-failed",
                           "data_docs": "file:///tally/data_docs/index.html#raw.salesforce.Opportunity",
                           "log": "http://airflow/log"}
    text = alert.text()
    for needle in ("expect_table_row_count_to_equal observed 998 expected 1000",
                   "sample keys: Id 006000000000001AAA, Id 006000000000001AAA\n",
                   "task land.gate_raw (try 1)", "run scheduled__2026-01-05",
                   f"tally reconcile --ds {DS}", "tally alerts ack <id>", "why it matters: Reconciliation"):
        assert needle in text, needle


def test_failure_alert_unwraps_airflow_fail_exception_from_a_data_problem():
    from airflow.sdk.exceptions import AirflowFailException

    from tally.airflow.tasks import run

    drift = schema_check("salesforce.Opportunity", {"schema_drift": {"removed": ["Region__c"], "retyped": {}},
                                                    "committed_at": "2026-01-06T00:05:00+00:00"})
    problem = [count_result(), drift]

    def gate():
        raise DataProblem("; ".join(r.summary() for r in problem), problem)

    with pytest.raises(AirflowFailException) as info:
        run(gate)
    assert isinstance(info.value.__cause__, DataProblem)
    assert gate_results_of(info.value) == problem
    alert = failure_alert("tally_daily", DS, "land.gate_raw", info.value, runbook_url="rb.md")
    assert alert.category == "raw_gate"  # the count is the headline; drift rides along
    assert alert.suites == ["raw.salesforce.Opportunity", "schema.salesforce.Opportunity"]
    assert [f["expectation"] for f in alert.failures][-1] == "source_field_still_exists"
    only_drift = failure_alert("tally_daily", DS, "land.gate_raw",
                               DataProblem(drift.summary(), [drift]), runbook_url="rb.md")
    assert only_drift.category == "schema_drift" and only_drift.links["runbook"] == "rb.md#schema-drift"
    assert only_drift.gate == alert.gate  # same gate task: one alert per (dag, ds, gate)


def test_the_raw_gate_alerts_once_per_failed_dataset():
    """One raw gate task validates every dataset; each failed dataset is its own alert (its own
    dedupe key), its schema drift riding along; other gates alert once per task."""
    drift = schema_check("salesforce.Opportunity", {"schema_drift": {"removed": ["Region__c"], "retyped": {}}})
    customers = GateResult(
        suite="raw.erp.customers", hop="raw", dataset="erp.customers", success=False, evaluated=1, failed=1,
        failures=[{"expectation": "manifest_files_present", "column": None,
                   "observed": "1 of 2 file(s) the manifest lists are gone", "expected": "every listed file present",
                   "sample": ["part-a-00001.parquet"]}])
    passed = GateResult(suite="raw.erp.products", hop="raw", dataset="erp.products", success=True, evaluated=5,
                        failed=0)
    problem = DataProblem("three failed", [count_result(), drift, customers, passed])
    alerts = failure_alerts("tally_daily", DS, "land.gate_raw", problem, runbook_url="rb.md", try_number=1)
    assert [(a.gate, a.dataset, a.category) for a in alerts] == [
        ("land.gate_raw:salesforce.Opportunity", "salesforce.Opportunity", "raw_gate"),
        ("land.gate_raw:erp.customers", "erp.customers", "raw_gate")]
    opportunity, files = alerts
    assert opportunity.suites == ["raw.salesforce.Opportunity", "schema.salesforce.Opportunity"]
    assert "erp.customers" not in opportunity.text() and "salesforce" not in files.text().replace("tally_daily", "")
    assert files.failures[0]["sample"] == ["part-a-00001.parquet"] and "1 of 2 file(s)" in files.summary
    assert all(a.task_id == "land.gate_raw" and a.try_number == 1 for a in alerts)
    # only drift for a dataset: its own category, still keyed by the dataset
    (only_drift,) = failure_alerts("tally_daily", DS, "land.gate_raw", DataProblem("drift", [drift]))
    assert (only_drift.gate, only_drift.category) == ("land.gate_raw:salesforce.Opportunity", "schema_drift")
    # other gates (several datasets each) and non-gate tasks: one alert per task, as failure_alert
    warehouse = [GateResult(suite=f"warehouse.{d}", hop="warehouse", dataset=d, success=False, evaluated=2,
                            failed=1) for d in ("erp.customers", "salesforce.User")]
    (one,) = failure_alerts("tally_daily", DS, "gate_warehouse", DataProblem("two tables", warehouse))
    assert one.gate == "gate_warehouse" and one.dataset == "erp.customers, salesforce.User"
    (crashed,) = failure_alerts("tally_daily", DS, "land.gate_raw", RuntimeError("lake unreachable"))
    assert (crashed.gate, crashed.category, crashed.error) == ("land.gate_raw", "raw_gate",
                                                               "RuntimeError: lake unreachable")


@pytest.mark.parametrize("task_id,category,gate", [
    ("land.extract_salesforce_User", "extract_failed", "task:land.extract_salesforce_User"),
    ("spark_rep_rankings", "spark_failed", "task:spark_rep_rankings"),
    ("load_warehouse", "load_failed", "task:load_warehouse"),
    ("publish_warehouse", "publish_failed", "task:publish_warehouse"),
    ("dbt_build", "dbt_failed", "task:dbt_build"),
    ("gate_mart", "mart_gate", "gate_mart"),  # a gate task that failed without results is still that gate
    ("land.gate_raw", "raw_gate", "land.gate_raw"),  # the raw gate crashed: no dataset to name
    ("something_else", "task_failed", "task:something_else"),
])
def test_task_alerts_are_classified_by_task(task_id, category, gate):
    alert = task_alert("tally_daily", DS, task_id, RuntimeError("boom"), try_number=3, runbook_url="rb.md")
    assert (alert.category, alert.gate) == (category, gate)
    assert task_category(task_id) == category
    assert alert.links["runbook"] == f"rb.md#{CATEGORIES[category][1]}"


def test_task_alert_carries_the_error_without_secrets_and_keeps_the_tail():
    err = ConnectionError("Salesforce query: gave up after 4 attempts; last error: 503 at "
                          "postgresql://tally:hunter2@db/warehouse password=hunter2 " + SECRET_URL)
    alert = task_alert("tally_daily", DS, "land.extract_salesforce_User", err, try_number=4, secrets=[SECRET_URL])
    assert alert.title.startswith("Extraction gave up: land.extract_salesforce_User after 4 tries")
    assert "gave up after 4 attempts" in alert.summary and "ConnectionError" in alert.error
    assert "hunter2" not in alert.text() and "s3cr3t" not in alert.text()
    long = task_alert("tally_daily", DS, "dbt_build", DataProblem("dbt build failed\n" + "x" * 5000 + "\nFINAL CAUSE"))
    assert long.error.startswith("DataProblem: dbt build failed") and long.error.endswith("FINAL CAUSE")
    assert len(long.error) < 2000 and long.category == "dbt_failed"


def test_slack_payload_has_text_and_blocks_and_escapes():
    alert = gate_alert("tally_daily", DS, [count_result()], task_id="land.gate_raw",
                       runbook_url="https://git.example/tally/blob/main/docs/runbook.md", log_url="http://af/log")
    alert.id = 42
    alert.failures[0]["text"] = "a <b> & c"
    payload = channels.slack_payload(alert, mention="<!here>")
    assert payload["text"].startswith("<!here> Raw gate failed: raw.salesforce.Opportunity")
    types = [b["type"] for b in payload["blocks"]]
    assert types[0] == "header" and types[-1] == "context" and len(payload["blocks"]) <= 50
    body = json.dumps(payload)
    assert "a &lt;b&gt; &amp; c" in body and "<!here> *What:*" in body
    assert "<https://git.example/tally/blob/main/docs/runbook.md#raw-gate-failed|Runbook>" in body
    assert "<http://af/log|Task log>" in body and "tally alerts ack 42" in body
    assert "sample keys: `Id 006000000000001AAA`" in body
    for block in payload["blocks"]:
        for part in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            assert part is None or len(part["text"]) <= 3000


def test_webhook_payload_and_email_message():
    alert = gate_alert("tally_daily", DS, [count_result()], task_id="land.gate_raw")
    alert.id = 7
    payload = json.loads(json.dumps(channels.webhook_payload(alert)))
    assert payload["source"] == "tally" and payload["version"] == 1 and payload["id"] == 7
    assert payload["dedupe_key"] == f"tally_daily/{DS}/land.gate_raw"
    assert payload["failures"][0]["observed"] == 998 and payload["text"].startswith("Raw gate failed")
    msg = channels.email_message(alert, SmtpConfig("mail", to=("a@x.org", "b@x.org"), sender="tally@x.org"))
    assert msg["Subject"].startswith("[tally] Raw gate failed") and msg["To"] == "a@x.org, b@x.org"
    assert msg["X-Tally-Alert-Id"] == "7" and "observed 998 expected 1000" in msg.get_content()


def test_config_from_env_and_redaction():
    cfg = from_env({"TALLY_ALERT_SLACK_URL": SECRET_URL, "TALLY_ALERT_WEBHOOK_URL": "https://hook.example/x?token=abcdef12",
                    "TALLY_ALERT_WEBHOOK_AUTHORIZATION": "Bearer tok-123456", "TALLY_ALERT_SMTP_HOST": "mail",
                    "TALLY_ALERT_SMTP_TO": "a@x.org, b@x.org", "TALLY_ALERT_SMTP_PASSWORD": "pw-secret",
                    "TALLY_ALERT_SMTP_STARTTLS": "false", "TALLY_RUNBOOK_URL": "https://rb"})
    assert cfg.channels() == ["slack", "webhook", "email"]
    assert cfg.smtp.to == ("a@x.org", "b@x.org") and cfg.smtp.starttls is False and cfg.smtp.port == 587
    assert cfg.data_docs_url.endswith("/data_docs/index.html") and cfg.data_docs_url.startswith("file://")
    shown = repr(cfg)
    assert "s3cr3t" not in shown and "tok-123456" not in shown and "pw-secret" not in shown
    assert redact_url(SECRET_URL) == "https://hooks.slack.example/***"
    text = f"posting to {SECRET_URL} with Bearer tok-123456 and pw-secret; path /services/T0001/B0002/s3cr3tT0k3nValue"
    cleaned = redact(text, cfg.secrets())
    assert "s3cr3t" not in cleaned and "tok-123456" not in cleaned and "pw-secret" not in cleaned
    assert from_env({}).channels() == []


def test_every_category_links_to_a_runbook_section():
    headings = re.findall(r"^#{1,3} (.+)$", (REPO / "docs" / "runbook.md").read_text(), re.M)
    slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    for category, (_, anchor) in CATEGORIES.items():
        assert anchor in slugs, (category, anchor)


def test_callback_module_is_cheap_to_import():
    code = ("import sys, tally.airflow.callback; heavy = [m for m in ('psycopg', 'pyarrow', 'pandas', 'airflow',"
            " 'great_expectations', 'tally.airflow.tasks', 'tally.airflow.connections', 'tally.gates')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_callback_never_raises(monkeypatch, caplog):
    import tally.airflow.callback as callback
    from tally.airflow.callback import alert_on_failure

    def broken(context):
        raise RuntimeError("warehouse and every channel are down")

    monkeypatch.setattr(callback, "raise_failure_alert", broken)
    alert_on_failure({"exception": RuntimeError("the task's own failure")})  # must not raise
    assert "could not raise the on-call alert" in caplog.text


def test_tally_daily_tasks_carry_the_failure_callback():
    import importlib.util

    from tally.airflow.callback import alert_on_failure

    spec = importlib.util.spec_from_file_location("tally_daily_alerts_test", REPO / "dags" / "tally_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.tally_daily()
    for task in dag.tasks:
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert alert_on_failure in callbacks, task.task_id


def test_adapter_reads_alert_connections(monkeypatch):
    from tally.airflow.connections import alert_config

    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_SLACK", json.dumps({"conn_type": "http", "host": SECRET_URL,
                                                                    "extra": {"mention": "<!here>"}}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_WEBHOOK", "https://hook.example/in/abc123456")  # URI form
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_SMTP", json.dumps({
        "conn_type": "smtp", "host": "mail.example", "port": 2525, "login": "bot", "password": "pw",
        "extra": {"from": "tally@example.org", "to": ["oncall@example.org"], "starttls": "false"}}))
    monkeypatch.delenv("TALLY_ALERT_SLACK_URL", raising=False)
    cfg = alert_config()
    assert cfg.slack == SlackConfig(SECRET_URL, mention="<!here>")
    assert cfg.webhook == WebhookConfig("https://hook.example/in/abc123456")
    assert cfg.smtp == SmtpConfig("mail.example", 2525, "tally@example.org", ("oncall@example.org",), "bot", "pw",
                                  starttls=False)
    for name in ("TALLY_ALERT_SLACK", "TALLY_ALERT_WEBHOOK", "TALLY_ALERT_SMTP"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}")
    assert alert_config() == AlertConfig(data_docs_url=cfg.data_docs_url, runbook_url=cfg.runbook_url)
