"""The ledger view inside the embedded stack's real Airflow API server (issue 15, item 9): the
plugin is loaded from its entry point, its page sits behind Airflow's login, reads the stack's
warehouse through the tally_warehouse Connection, and the DAG run tab is registered."""

from __future__ import annotations

import psycopg
import pytest
import requests

from tally import ledger
from tally.ledger import Entry

pytestmark = pytest.mark.e2e

DS = "2026-11-02"  # a ds the demo data does not use


def test_the_api_server_serves_the_ledger_view(airflow_stack):
    from tally.cli.airflow_api import AirflowClient
    from tally_local.stack.airflow import ADMIN_USER

    with psycopg.connect(airflow_stack.postgres("warehouse").conninfo(), autocommit=True) as conn:
        for hop, rows in (("source", 50), ("raw", 50), ("warehouse", 48)):
            ledger.record(conn, Entry(DS, "e2e.ledger_view", hop, rows, None, {}))
    base = airflow_stack.airflow_url
    assert requests.get(f"{base}/tally/ledger", params={"ds": DS}, timeout=30).status_code == 401
    client = AirflowClient(base, ADMIN_USER, airflow_stack.state["airflow"]["admin_password"])
    page = client.http.get(f"{base}/tally/ledger", params={"ds": DS}, timeout=60)
    assert page.status_code == 200, page.text[:500]
    assert "<tr data-dataset='e2e.ledger_view'>" in page.text
    assert "class='num divergent' data-hop='warehouse' data-rows='48'" in page.text
    assert "<svg id='chart'" in page.text
    plugins = client.http.get(f"{base}/api/v2/plugins", timeout=30).json()["plugins"]
    views = [v for p in plugins if p["name"] == "tally" for v in p["external_views"]]
    assert {v["destination"] for v in views} == {"dag_run", "nav"}
    errors = client.http.get(f"{base}/api/v2/plugins/importErrors", timeout=30).json()
    assert errors["total_entries"] == 0, errors
