"""The ledger view (issue 15, item 9) on a real Postgres: the queries (tally.reconcile.run_view),
the FastAPI app (tally.airflow.ui.app) through TestClient, and the page in headless Chromium
from a local server, with a seeded ledger where erp.payments loses 7 rows at the warehouse."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tally import ledger
from tally.airflow.ui import render
from tally.airflow.ui.app import create_app
from tally.alerts import store as alert_store
from tally.alerts.model import Alert
from tally.ledger import Entry, validation_log
from tally.load import wap
from tally.quality.result import GateResult
from tally.reconcile import run_view

pytestmark = pytest.mark.integration

DS = "2026-12-02"
DAYS = 10
PAGE = "validations/raw/erp/payments/2026-12-02/20261203T010203.000000Z/erp_payments.html"
DATASETS = {"erp.payments": 100, "salesforce.Account": 40, "rep_rankings": 12}


def seed(conn: psycopg.Connection) -> None:
    """10 ds of ledger ending at DS; on DS erp.payments reaches the warehouse with 93 of 100 rows,
    and 2026-11-28 has no entries (no run). A failed raw gate, a passed one, and an open alert."""
    end = date.fromisoformat(DS)
    for i in range(DAYS):
        ds = (end - timedelta(days=i)).isoformat()
        if ds == "2026-11-28":
            continue
        for dataset, rows in DATASETS.items():
            hops = ("curated", "mart") if dataset == "rep_rankings" else ("source", "raw", "curated", "warehouse")
            for hop in hops:
                n = 93 if (ds == DS and dataset == "erp.payments" and hop == "warehouse") else rows + i
                ledger.record(conn, Entry(ds, dataset, hop, n, f"{dataset}-{n}", {}))
    failure = [{"expectation": "expect_column_values_to_be_between", "column": "amount", "observed": 1,
                "expected": 0, "unexpected_count": 1, "element_count": 5, "sample": []}]
    validation_log.store(conn, DS, GateResult(suite="raw.erp.payments", hop="raw", dataset="erp.payments",
                                              success=False, evaluated=7, failed=1, failures=failure), "r1")
    outlier = {"expectation": "expect_column_values_to_be_between", "column": "AnnualRevenue", "observed": 1,
               "expected": "at most 5000000", "unexpected_count": 1, "element_count": 40, "sample": [],
               "severity": "warn"}
    validation_log.store(conn, DS, GateResult(suite="raw.salesforce.Account", hop="raw", dataset="salesforce.Account",
                                              success=True, evaluated=5, failed=0, failures=[], warnings=[outlier]),
                         "r1")
    # the ds is loaded into staging and its warehouse gate failed: nothing of it is published
    wap.mark_staged(conn, DS, "r1", {"raw.erp_payments": 93})
    wap.mark_gated(conn, DS, False, {"raw.erp_payments": 93})
    alert = Alert(dag_id="tally_daily", ds=DS, gate="gate_warehouse", category="warehouse_gate",
                  title="Warehouse gate failed: erp.payments", summary="erp.payments: 93 of 100 rows in the warehouse",
                  links={"runbook": "https://example.invalid/docs/runbook.md#warehouse-gate-failed"})
    alert_store.claim(conn, alert, ["slack"])
    acked = Alert(dag_id="tally_daily", ds=DS, gate="gate_curated", category="curated_gate", title="old and handled",
                  summary="acknowledged already")
    alert_store.acknowledge(conn, alert_store.claim(conn, acked, ["slack"]), "oncall")


def docs_site(root: Path) -> Path:
    """A Data Docs site with the failed validation's page and its catalog entry."""
    (root / PAGE).parent.mkdir(parents=True)
    (root / PAGE).write_text("<html><body><h1>raw.erp.payments validation</h1></body></html>")
    (root / "index.json").write_text(json.dumps({"validations": [
        {"expectation_suite_name": "raw.erp.payments", "run_name": DS, "filepath": PAGE,
         "run_time": "2026-12-03T01:02:03+00:00", "validation_success": False}]}))
    return root


@pytest.fixture
def seeded(warehouse_conn):
    with psycopg.connect(warehouse_conn.conninfo(), autocommit=True) as conn:
        seed(conn)
    return warehouse_conn


def test_run_view_reads_flow_gates_alerts_and_history(seeded, tmp_path):
    site = docs_site(tmp_path / "docs")
    from tally.quality import docs

    with psycopg.connect(seeded.conninfo(), autocommit=True) as conn:
        view = run_view.run_view(conn, DS, docs.latest(site))
        days = run_view.history(conn, DS, DAYS)
        assert run_view.latest_ds(conn) == DS
        assert [d.rows.get("warehouse") for d in run_view.history(conn, DS, 2, "erp.payments")] == [101, 93]
    assert [(f.dataset, f.divergence and (f.divergence.from_hop, f.divergence.to_hop)) for f in view.flows] == [
        ("erp.payments", ("curated", "warehouse")), ("rep_rankings", None), ("salesforce.Account", None)]
    assert [(g.dataset, g.success, g.pages, g.warnings) for g in view.gates] == [
        ("erp.payments", False, {"raw.erp.payments": PAGE}, 0), ("salesforce.Account", True, {}, 1)]
    assert "AnnualRevenue" in view.gates[1].warning_summary
    assert view.publication == {"staged": True, "gate_passed": False, "published_at": None, "published_run": None}
    assert [a["gate"] for a in view.alerts] == ["gate_warehouse"]  # the acknowledged one is not open
    assert [d.ds for d in days][0] == "2026-11-23" and days[-1].ds == DS
    assert days[-1].divergent == ("erp.payments",) and not any(d.divergent for d in days[:-1])
    assert days[-1].rows == {"source": 140, "raw": 140, "curated": 152, "warehouse": 133, "mart": 12}
    assert next(d for d in days if d.ds == "2026-11-28").rows == {}


def client(conn_info, site: Path, resolve=None) -> TestClient:
    return TestClient(create_app(lambda: conn_info, docs_dir=site, resolve_ds=resolve))


def test_the_app_serves_the_page_json_and_data_docs(seeded, tmp_path):
    site = docs_site(tmp_path / "docs")
    http = client(seeded, site, resolve=lambda dag, run: DS if (dag, run) == ("tally_daily", "scheduled__x") else None)
    page = http.get("/ledger", params={"ds": DS, "days": DAYS})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "class='num divergent' data-hop='warehouse' data-rows='93'" in page.text
    assert f"href='data-docs/{PAGE}'" in page.text
    assert "Warehouse gate failed: erp.payments" in page.text and "old and handled" not in page.text
    assert len(re.findall(r"class='point'", page.text)) == 9 * 5  # 9 days with entries, 5 hops each
    assert http.get(f"/data-docs/{PAGE}").text.count("raw.erp.payments validation") == 1
    assert "a load of this ds is staged, not published (the warehouse gate FAILED" in page.text
    assert "4/5 passed<br><span class='warn'>1 warning</span>" in page.text
    # where the source's rows went, beside the hops (seeded without quarantine or deletes: all landed)
    assert "<td class='num acct' data-count='source_count'>100</td><td class='num acct' data-count='landed'>100</td>" \
        in page.text
    assert "<td class='missing acct' data-count='source_count'>·</td>" in page.text  # rep_rankings: not from a source
    # the DAG run tab's link, and no ds at all (the newest in the ledger)
    assert "ds 2026-12-02" in http.get("/ledger", params={"dag_id": "tally_daily", "run_id": "scheduled__x"}).text
    assert "ds 2026-12-02" in http.get("/ledger").text
    data = http.get("/ledger.json", params={"ds": DS, "days": 3}).json()
    assert data["flows"][0]["accounting"] == {"source_count": 100, "landed": 100, "quarantined": 0, "tombstones": 0}
    assert data["publication"]["staged"] is True and data["publication"]["gate_passed"] is False
    assert data["flows"][0]["first_divergence"] == {"from_hop": "curated", "to_hop": "warehouse",
                                                    "why": "row count 100 -> 93"}
    assert [d["ds"] for d in data["history"]] == ["2026-11-30", "2026-12-01", DS]


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"ds": "2026-13-45"}, 400, "ds must be a real date as YYYY-MM-DD"),
    ({"ds": "yesterday"}, 400, "ds must be a date as YYYY-MM-DD"),
    ({"ds": DS, "days": 0}, 400, "days must be between 1 and 90"),
    ({"run_id": "manual__nope"}, 404, "no run 'manual__nope' of tally_daily"),
])
def test_bad_input_is_one_line_not_a_traceback(seeded, tmp_path, params, status, message):
    answer = client(seeded, tmp_path, resolve=lambda dag, run: None).get("/ledger", params=params)
    assert (answer.status_code, answer.text.startswith(message)) == (status, True), answer.text


def test_an_unreachable_warehouse_is_one_line_without_its_password(tmp_path):
    from tally.core.config import PostgresConn

    down = PostgresConn("127.0.0.1", 1, "tally", "s3cret-pw", "warehouse")
    answer = client(down, tmp_path).get("/ledger", params={"ds": DS})
    assert answer.status_code == 503
    assert answer.text.startswith("cannot reach the warehouse postgresql://tally:***@127.0.0.1:1/warehouse")
    assert "s3cret-pw" not in answer.text


def test_an_empty_ledger_says_so(warehouse_conn, tmp_path):
    answer = client(warehouse_conn, tmp_path).get("/ledger")
    assert answer.status_code == 404 and "tally_daily has not run yet" in answer.text
    page = client(warehouse_conn, tmp_path).get("/ledger", params={"ds": DS})
    assert page.status_code == 200 and "The ledger has nothing for ds 2026-12-02" in page.text


@contextmanager
def served(app):
    """The app on 127.0.0.1 (a free port) under uvicorn; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_page_in_headless_chromium(seeded, tmp_path):
    from support import chromium, png

    chromium.require()
    site = docs_site(tmp_path / "docs")
    with served(create_app(lambda: seeded, docs_dir=site)) as base:
        url = f"{base}/ledger?ds={DS}&days={DAYS}"
        dom, requests = chromium.requested(url, tmp_path)
        shot = chromium.screenshot(url, tmp_path, tmp_path / "ledger.png", size=(1300, 1400))
    # every dataset and hop, the divergent hop highlighted, the chart with its dip, nothing fetched
    for name in (*DATASETS, *ledger.HOPS, "Warehouse gate failed: erp.payments", "FAILED", "PASSED"):
        assert name in dom, name
    assert re.search(r'<td class="num divergent" data-hop="warehouse" data-rows="93">93', dom)
    assert re.search(r'<svg id="chart"[^>]*>', dom) and f'class="dip" data-ds="{DS}"' in dom
    assert len(re.findall(r'class="point"', dom)) == 45
    assert f'href="data-docs/{PAGE}"' in dom
    assert [u for u in requests if not u.startswith(base)] == []
    # on screen: the divergent cell's red, the dip's band, and each hop's line colour
    assert png.count_colour(shot, (0xFE, 0xCA, 0xCA)) > 500
    for hop, colour in render.HOP_COLOURS.items():
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert png.count_colour(shot, rgb, tolerance=10) > 20, hop


def test_airflow_loads_the_plugin_and_its_api_server_serves_the_page(seeded, tmp_path):
    """Airflow's own API server app (in a fresh process, as `airflow api-server` builds it) finds
    the plugin through its entry point, once, mounts the app at /tally behind Airflow's login,
    and reads the ledger through the tally_warehouse Connection."""
    import os
    import subprocess
    import sys

    c = seeded
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW_CONN_TALLY_WAREHOUSE": json.dumps({"conn_type": "postgres", "host": c.host, "port": c.port,
                                                       "login": c.user, "password": c.password, "schema": c.dbname}),
           "TALLY_DATA_DOCS_DIR": str(docs_site(tmp_path / "docs"))}
    probe = Path(__file__).with_name("airflow_ui_probe.py")
    out = subprocess.run([sys.executable, str(probe), DS], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["plugins"].count("tally") == 1 and got["errors"] == {}
    assert got["anonymous"] == 401
    assert got["status"] == 200 and "class='num divergent' data-hop='warehouse' data-rows='93'" in got["page"]
    assert f"href='data-docs/{PAGE}'" in got["page"]
    assert got["no_run"] == [404, "no run 'manual__nope' of tally_daily (give ?ds=YYYY-MM-DD)"]  # looked up in Airflow
    (plugin,) = got["ui_plugins"]["plugins"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/tally"]
    assert {(v["destination"], v["href"]) for v in plugin["external_views"]} == {
        ("dag_run", "tally/ledger?dag_id={DAG_ID}&run_id={RUN_ID}"), ("nav", "tally/ledger")}
