"""Alerts against real receivers: an HTTP server (Slack and webhook) and an SMTP server on
127.0.0.1, the warehouse's ops.alerts, the Airflow failure callback and the `tally alerts` CLI."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from tally.alerts.config import AlertConfig, SlackConfig, SmtpConfig, WebhookConfig
from tally.alerts.dispatch import raise_alert
from tally.alerts.model import gate_alert, task_alert
from tally.core.errors import DataProblem
from tally.quality.result import GateResult
from tally_local.stack.process import free_port

pytestmark = pytest.mark.integration

DS = "2026-01-05"
SLACK_PATH = "/services/T0001/B0002/s3cr3tSlackToken"
HOOK_PATH = "/hooks/tally/s3cr3tHookToken"


# -- receivers ------------------------------------------------------------------------------
class HttpReceiver:
    """Records every POST; answers 500 under /fail, 200 otherwise."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"no_service" if status == 500 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def at(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """aiosmtpd in a thread; with ``tls`` it requires STARTTLS and a login."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Message] = []
        self.logins: list[tuple[bytes, bytes]] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
                receiver.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            receiver.logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=auth_data.password == b"smtp-pw-123", handled=False)

        kwargs: dict = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            kwargs = {"tls_context": context, "require_starttls": True, "authenticator": authenticator,
                      "auth_required": True}
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def http():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()


def channels(http: HttpReceiver, smtp: SmtpReceiver, slack_path: str = SLACK_PATH, hook_path: str = HOOK_PATH,
             **smtp_kwargs) -> AlertConfig:
    return AlertConfig(
        slack=SlackConfig(http.url(slack_path), timeout=5),
        webhook=WebhookConfig(http.url(hook_path), {"Authorization": "Bearer hook-secret-99"}, timeout=5),
        smtp=SmtpConfig("127.0.0.1", smtp.port, "tally@example.org", ("oncall@example.org",), starttls=False,
                        timeout=5, **smtp_kwargs),
        data_docs_url="file:///tally/data_docs/index.html", runbook_url="docs/runbook.md",
    )


def mart_result() -> GateResult:
    return GateResult(
        suite="mart.mart_rep_performance", hop="mart", dataset="mart_rep_performance", success=False, evaluated=6,
        failed=1, run_at=datetime.now(UTC).isoformat(), target="postgres marts.mart_rep_performance WHERE ds = …",
        failures=[{"expectation": "expect_column_sum_to_be_between", "column": "won_amount", "observed": 1180500.0,
                   "expected": {"min": "1250500.00", "max": "1250500.00"}, "sample": [],
                   "note": "Business total reconciled against curated data."}],
    )


def rows(conninfo: str, dag_id: str) -> list[tuple]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT id, gate, category, occurrences, delivery, payload, acknowledged_at"
                            " FROM ops.alerts WHERE dag_id = %s ORDER BY id", (dag_id,)).fetchall()


# -- tests ----------------------------------------------------------------------------------
def test_one_alert_per_gate_on_every_channel_however_often_it_fires(warehouse_dsn, http, smtp, caplog):
    caplog.set_level("INFO", logger="tally.alerts")
    config = channels(http, smtp)
    outcomes = [
        raise_alert(gate_alert("tally_daily", DS, [mart_result()], task_id="gate_mart", run_id=f"run_{i}",
                               try_number=1, runbook_url=config.runbook_url, data_docs_url=config.data_docs_url),
                    config, warehouse_dsn)
        for i in range(3)  # the first failure, then two re-runs of the same ds
    ]
    assert [o.sent for o in outcomes] == [True, False, False]
    assert [o.duplicate for o in outcomes] == [False, True, True]
    assert len({o.alert.id for o in outcomes}) == 1

    (slack,), (hook,) = http.at(SLACK_PATH), http.at(HOOK_PATH)
    assert len(http.requests) == 2 and len(smtp.messages) == 1
    assert slack["json"]["text"].startswith("Mart gate failed: mart.mart_rep_performance")
    assert any("won_amount" in json.dumps(b) and "1180500.0" in json.dumps(b) for b in slack["json"]["blocks"])
    assert hook["headers"]["Authorization"] == "Bearer hook-secret-99"
    body = hook["json"]
    assert (body["dag_id"], body["ds"], body["gate"], body["task_id"], body["run_id"]) == (
        "tally_daily", DS, "gate_mart", "gate_mart", "run_0")
    assert body["failures"][0]["observed"] == 1180500.0 and body["hop"] == "mart"
    assert body["links"]["runbook"] == "docs/runbook.md#mart-gate-failed"
    assert body["links"]["data_docs"] == "file:///tally/data_docs/index.html" and body["id"] == outcomes[0].alert.id
    mail = smtp.messages[0]
    assert mail["Subject"].startswith("[tally] Mart gate failed") and mail["To"] == "oncall@example.org"
    assert "won_amount" in mail.get_payload() and f"tally alerts ack {body['id']}" in mail.get_payload()

    ((alert_id, gate, category, occurrences, delivery, payload, acked),) = rows(warehouse_dsn, "tally_daily")
    assert (gate, category, occurrences, acked) == ("gate_mart", "mart_gate", 3, None)
    assert {c: d["status"] for c, d in delivery.items()} == {"slack": "sent", "webhook": "sent", "email": "sent"}
    assert payload["id"] == alert_id and payload["failures"][0]["column"] == "won_amount"
    stored = json.dumps([delivery, payload]) + caplog.text
    assert "s3cr3t" not in stored and "hook-secret-99" not in stored


def test_a_failing_channel_is_recorded_and_does_not_stop_the_others(warehouse_dsn, http, smtp):
    dead = free_port()  # nothing listens there
    config = channels(http, smtp, slack_path="/fail/services/T1/B1/s3cr3tSlackToken")
    config = AlertConfig(slack=config.slack, smtp=config.smtp, runbook_url=config.runbook_url,
                         webhook=WebhookConfig(f"http://127.0.0.1:{dead}/hooks/s3cr3tHookToken", timeout=2))
    outcome = raise_alert(task_alert("tally_daily", DS, "land.extract_salesforce_User",
                                     ConnectionError("gave up after 4 attempts; last error: 503"), try_number=4,
                                     runbook_url=config.runbook_url), config, warehouse_dsn)
    assert outcome.sent and outcome.recorded
    assert outcome.delivery["slack"]["status"] == "failed" and "HTTP 500" in outcome.delivery["slack"]["error"]
    assert outcome.delivery["webhook"]["status"] == "failed" and "cannot reach" in outcome.delivery["webhook"]["error"]
    assert outcome.delivery["email"]["status"] == "sent" and len(smtp.messages) == 1
    assert "Extraction gave up" in smtp.messages[0]["Subject"]
    ((_, gate, category, _, delivery, _, _),) = rows(warehouse_dsn, "tally_daily")
    assert (gate, category) == ("task:land.extract_salesforce_User", "extract_failed")
    assert {c: d["status"] for c, d in delivery.items()} == {"slack": "failed", "webhook": "failed", "email": "sent"}
    assert "s3cr3t" not in json.dumps(delivery)
    assert delivery["slack"]["error"].startswith(f"http://127.0.0.1:{http.server.server_port}/***")


def test_concurrent_failures_of_one_gate_send_once(warehouse_dsn, http, smtp):
    config = channels(http, smtp)

    def fire(i: int):
        return raise_alert(gate_alert("tally_daily", DS, [mart_result()], task_id="gate_mart", run_id=f"r{i}"),
                           config, warehouse_dsn)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(fire, range(4)))
    assert sum(o.sent for o in outcomes) == 1
    assert len(http.at(SLACK_PATH)) == 1 and len(http.at(HOOK_PATH)) == 1 and len(smtp.messages) == 1
    assert rows(warehouse_dsn, "tally_daily")[0][3] == 4


def test_an_unreachable_warehouse_still_pages(http, smtp):
    config = channels(http, smtp)
    dead = f"host=127.0.0.1 port={free_port()} user=x password=pg-secret-77 dbname=warehouse connect_timeout=2"
    outcome = raise_alert(task_alert("tally_daily", DS, "dbt_build", DataProblem("dbt build failed")), config, dead)
    assert outcome.sent and not outcome.recorded and outcome.error
    assert "pg-secret-77" not in outcome.error
    assert len(http.requests) == 2 and len(smtp.messages) == 1


def test_email_with_starttls_and_login(warehouse_dsn, tmp_path):
    from tally_local.sfsim.tls import generate_certificate

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_certificate(cert, key)
    server = SmtpReceiver(tls=(str(cert), str(key)))
    try:
        config = AlertConfig(smtp=SmtpConfig("127.0.0.1", server.port, "tally@example.org", ("oncall@example.org",),
                                             login="tally-bot", password="smtp-pw-123", starttls=True,
                                             ca_bundle=str(cert), timeout=5))
        outcome = raise_alert(task_alert("tally_daily", DS, "load_warehouse", OSError("disk full")), config,
                              warehouse_dsn)
        assert outcome.delivery["email"]["status"] == "sent", outcome.delivery
        assert server.logins == [(b"tally-bot", b"smtp-pw-123")] and len(server.messages) == 1
        wrong = AlertConfig(smtp=SmtpConfig(**{**config.smtp.__dict__, "password": "bad-pw-456"}))
        failed = raise_alert(task_alert("tally_daily", "2026-01-06", "load_warehouse", OSError("x")), wrong,
                             warehouse_dsn)
        assert failed.delivery["email"]["status"] == "failed" and "535" in failed.delivery["email"]["error"]
        assert "bad-pw-456" not in failed.delivery["email"]["error"]
    finally:
        server.close()


def test_airflow_callback_builds_the_gate_alert_from_the_context(warehouse_conn, http, smtp, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from tally.airflow.callback import alert_on_failure
    from tally.airflow.tasks import run
    from tally.gates.raw import schema_check

    wh = warehouse_conn
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_WAREHOUSE", json.dumps({
        "conn_type": "postgres", "host": wh.host, "port": wh.port, "login": wh.user, "password": wh.password,
        "schema": wh.dbname}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_SLACK", json.dumps({"conn_type": "http", "host": http.url(SLACK_PATH)}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_WEBHOOK", json.dumps({
        "conn_type": "http", "host": http.url(HOOK_PATH), "extra": {"headers": {"X-Token": "hdr-secret"}}}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_ALERT_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": smtp.port,
        "extra": {"from": "tally@example.org", "to": "oncall@example.org, lead@example.org", "starttls": False}}))
    monkeypatch.setenv("TALLY_RUNBOOK_URL", "https://git.example/tally/blob/main/docs/runbook.md")
    monkeypatch.setenv("TALLY_DATA_DOCS_URL", "https://docs.example/data_docs/{suite}.html")

    drift = schema_check("salesforce.Opportunity", {"schema_drift": {"removed": ["Region__c"], "retyped": {}}})
    gone = GateResult(suite="raw.erp.customers", hop="raw", dataset="erp.customers", success=False, evaluated=1,
                      failed=1, failures=[{"expectation": "manifest_files_present", "column": None,
                                           "observed": "1 of 1 file(s) the manifest lists are gone",
                                           "expected": "every listed file present", "sample": ["part-x-00000.parquet"]}])

    def gate():  # the one raw gate task: two datasets failed in it
        raise DataProblem(f"{drift.summary()}; {gone.summary()}", [drift, gone])

    class TI:  # what Airflow's RuntimeTaskInstance offers the callback
        dag_id, task_id, run_id, try_number = ("tally_daily", "land.gate_raw",
                                               "scheduled__2026-01-05T00:00:00+00:00", 1)
        log_url = "http://127.0.0.1:8080/dags/tally_daily/runs/scheduled/tasks/land.gate_raw"

    for _attempt in range(3):  # a failure and two cleared re-runs
        try:
            run(gate)
        except AirflowFailException as exc:
            context = {"ti": TI(), "task_instance": TI(), "run_id": TI.run_id, "ds": DS, "exception": exc,
                       "data_interval_start": datetime(2026, 1, 5, tzinfo=UTC)}
        alert_on_failure(context)

    # one alert per failed dataset, each sent once on every channel however often the task failed
    slacks, hooks = http.at(SLACK_PATH), http.at(HOOK_PATH)
    assert len(slacks) == len(hooks) == len(smtp.messages) == 2
    assert smtp.messages[0]["To"] == "oncall@example.org, lead@example.org"
    body, other = (h["json"] for h in hooks)
    assert hooks[0]["headers"]["X-Token"] == "hdr-secret"
    assert (body["dag_id"], body["ds"], body["task_id"], body["run_id"], body["try_number"]) == (
        "tally_daily", DS, TI.task_id, TI.run_id, 1)
    assert (body["category"], body["gate"], body["suites"]) == (
        "schema_drift", "land.gate_raw:salesforce.Opportunity", ["schema.salesforce.Opportunity"])
    assert body["failures"][0]["expectation"] == "source_field_still_exists"
    assert body["failures"][0]["column"] == "Region__c" and body["failures"][0]["observed"] == "absent"
    assert body["links"] == {"runbook": "https://git.example/tally/blob/main/docs/runbook.md#schema-drift",
                             "data_docs": "https://docs.example/data_docs/schema.salesforce.Opportunity.html",
                             "log": TI.log_url}
    assert "<https://git.example/tally/blob/main/docs/runbook.md#schema-drift|Runbook>" in json.dumps(slacks[0]["json"])
    assert (other["category"], other["gate"], other["dataset"]) == ("raw_gate", "land.gate_raw:erp.customers",
                                                                     "erp.customers")
    assert other["failures"][0]["sample"] == ["part-x-00000.parquet"]
    assert "salesforce" not in json.dumps(other["failures"]) and "erp.customers" not in json.dumps(body["failures"])
    recorded = rows(wh.conninfo(), "tally_daily")
    assert [(gate, category, occurrences) for _, gate, category, occurrences, *_ in recorded] == [
        ("land.gate_raw:salesforce.Opportunity", "schema_drift", 3), ("land.gate_raw:erp.customers", "raw_gate", 3)]
    assert all(d["status"] == "sent" for r in recorded for d in r[4].values()) and len(recorded[0][4]) == 3

    # a non-gate failure after its retries: the error is the alert
    class ExtractTI(TI):
        task_id, try_number = "land.extract_erp_customers", 4

    alert_on_failure({"ti": ExtractTI(), "run_id": TI.run_id, "data_interval_start": datetime(2026, 1, 5, tzinfo=UTC),
                      "exception": ConnectionError("ERP unreachable: connection refused")})
    hook = http.at(HOOK_PATH)[-1]["json"]
    assert (hook["category"], hook["gate"], hook["try_number"]) == ("extract_failed", "task:land.extract_erp_customers", 4)
    assert "ERP unreachable" in hook["error"] and "after 4 tries" in hook["title"]


def test_cli_lists_shows_and_acknowledges(stack, monkeypatch):
    from typer.testing import CliRunner

    from tally.cli import app

    monkeypatch.setenv("TALLY_HOME", str(stack.home))
    monkeypatch.setenv("COLUMNS", "250")
    dag_id = f"cli_test_{uuid.uuid4().hex[:6]}"
    dsn = stack.postgres("warehouse").conninfo()
    first = raise_alert(gate_alert(dag_id, DS, [mart_result()], task_id="gate_mart"), AlertConfig(), dsn)
    second = raise_alert(task_alert(dag_id, DS, "dbt_build", DataProblem("dbt build failed: 1 of 9 [ERROR]")),
                         AlertConfig(), dsn)
    runner = CliRunner()

    listed = runner.invoke(app, ["alerts", "list", "--ds", DS])
    assert listed.exit_code == 0, listed.output
    assert dag_id in listed.output and "gate_mart" in listed.output and "task:dbt_build" in listed.output
    assert str(first.alert.id) in listed.output and "ops.alerts only" in listed.output
    assert dag_id in runner.invoke(app, ["alerts"]).output  # bare `tally alerts` lists too

    shown = runner.invoke(app, ["alerts", "show", str(first.alert.id)])
    assert shown.exit_code == 0 and "expect_column_sum_to_be_between(won_amount)" in shown.output
    assert "docs/runbook.md#mart-gate-failed" in shown.output

    acked = runner.invoke(app, ["alerts", "ack", str(first.alert.id), "--by", "alice", "--note", "re-ran dbt"])
    assert acked.exit_code == 0 and "acknowledged" in acked.output
    again = runner.invoke(app, ["alerts", "ack", str(first.alert.id), "--by", "bob"])
    assert again.exit_code == 0 and "already acknowledged by alice" in again.output
    with psycopg.connect(dsn) as conn:
        by, note, at = conn.execute("SELECT acknowledged_by, note, acknowledged_at FROM ops.alerts WHERE id = %s",
                                    (first.alert.id,)).fetchone()
    assert (by, note) == ("alice", "re-ran dbt") and at is not None

    still_open = runner.invoke(app, ["alerts", "list", "--ds", DS]).output
    assert still_open.count(dag_id) == 1 and "task:dbt_build" in still_open
    everything = runner.invoke(app, ["alerts", "list", "--all", "--ds", DS]).output
    assert "alice" in everything and str(second.alert.id) in everything
    missing = runner.invoke(app, ["alerts", "ack", "999999"])
    assert missing.exit_code == 1 and "no alert 999999" in missing.output


def test_a_repeat_while_open_shows_the_latest_failure_without_paging_again(warehouse_dsn):
    """Seen on the demo stack: a Spark task failed again for another reason and its open alert
    kept the first failure's text; on-call read a stale cause."""
    from tally.alerts import store

    dag = f"repeat_{uuid.uuid4().hex[:6]}"
    first = task_alert(dag, DS, "spark_rep_rankings", RuntimeError("Cannot execute: spark-submit …"), try_number=2)
    again = task_alert(dag, DS, "spark_rep_rankings", RuntimeError("rep_rankings: error: raw.erp.x ds=… holds 5 rows"),
                       try_number=3)
    with psycopg.connect(warehouse_dsn) as conn:
        alert_id = store.claim(conn, first, ["slack"])
        assert alert_id is not None and store.claim(conn, again, ["slack"]) is None  # not sent again
        (row,) = [a for a in store.list_alerts(conn, ds=DS, dag_id=dag) if a["id"] == alert_id]
    assert row["occurrences"] == 2 and "holds 5 rows" in row["summary"] and "spark-submit" not in row["summary"]
    assert row["delivery"] == {"slack": {"status": "pending"}}
