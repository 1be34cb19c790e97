"""The ledger view inside the embedded stack's real Airflow API server (issue 15, item 9): the
plugin is loaded from its entry point, its page sits behind Airflow's login, reads the stack's
warehouse through the tally_warehouse Connection, and the DAG run tab is registered; and, as on-call
sees it, in Debian's headless Chromium after a login on Airflow's own page: a tally_daily run's
"Tally ledger" tab renders the view in the UI's iframe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import requests

from tally import ledger
from tally.ledger import Entry

pytestmark = pytest.mark.e2e

DS = "2026-11-02"  # a ds the demo data does not use
DAG_ID = "tally_daily"
WAIT_MS = 60_000  # a busy machine: the UI's first load (its scripts, translations, plugins) can be slow
DIVERGENT_FILL = (0xFE, 0xCA, 0xCA)  # render.py's red for the divergent hop (and the chart's band)


@pytest.fixture(scope="module")
def ledger_entries(airflow_stack) -> str:
    """One dataset that loses 2 of 50 rows between raw and warehouse on DS."""
    with psycopg.connect(airflow_stack.postgres("warehouse").conninfo(), autocommit=True) as conn:
        for hop, rows in (("source", 50), ("raw", 50), ("warehouse", 48)):
            ledger.record(conn, Entry(DS, "e2e.ledger_view", hop, rows, None, {}))
    return DS


def test_the_api_server_serves_the_ledger_view(airflow_stack, ledger_entries):
    from tally.cli.airflow_api import AirflowClient
    from tally_local.stack.airflow import ADMIN_USER

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


@pytest.fixture()
def dag_run(airflow_stack, ledger_entries):
    """A tally_daily run at DS that never starts: triggered with the DAG paused (an earlier run at DS
    is reused), deleted afterwards and the DAG's pause state put back. Costs no pipeline."""
    from tally.cli.airflow_api import AirflowClient
    from tally_local.stack.airflow import ADMIN_USER

    base = airflow_stack.airflow_url
    client = AirflowClient(base, ADMIN_USER, airflow_stack.state["airflow"]["admin_password"])
    was_paused = client.wait_for_dag(DAG_ID)["is_paused"]
    start = datetime.fromisoformat(DS).replace(tzinfo=UTC)
    existing = client.latest_run_at(DAG_ID, start)
    if existing is not None:
        yield existing["dag_run_id"]
        return
    if not was_paused:
        client.http.patch(f"{base}/api/v2/dags/{DAG_ID}", json={"is_paused": True}, timeout=30).raise_for_status()
    run_id = client.trigger(DAG_ID, start, start + timedelta(days=1), run_id="e2e_ledger_view_browser")["dag_run_id"]
    try:
        yield run_id
    finally:
        client.http.delete(f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=30).raise_for_status()
        if not was_paused:
            client.unpause(DAG_ID)


def test_the_ledger_tab_after_a_browser_login(airflow_stack, dag_run, tmp_path):
    from playwright.sync_api import expect
    from support import browser, png

    from tally_local.stack.airflow import ADMIN_USER

    base = airflow_stack.airflow_url
    run_page = f"/dags/{DAG_ID}/runs/{dag_run}"
    shot = tmp_path / "ledger-tab.png"
    with browser.page(timeout_ms=WAIT_MS) as page:
        page.goto(base + run_page)  # not logged in: Airflow sends the browser to its login page
        page.wait_for_url("**/auth/login?next=*")
        page.get_by_label("Username").fill(ADMIN_USER)
        page.get_by_label("Password").fill(airflow_stack.state["airflow"]["admin_password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{run_page}")  # back on the run's page, logged in
        tab = page.locator("a[href$='/plugin/tally-ledger-run']")
        expect(tab).to_have_text("Tally ledger", timeout=WAIT_MS)  # the plugin's dag_run view: a tab of the run
        tab.click()
        page.wait_for_url(f"**{run_page}/plugin/tally-ledger-run")
        frame = page.frame_locator("iframe[src*='tally/ledger']")
        row = frame.locator("tr[data-dataset='e2e.ledger_view']")
        row.wait_for()  # the iframe's page, fetched with the UI's login cookie, has rendered
        try:
            assert frame.locator("h1").inner_text() == f"Tally ledger · {DAG_ID} · ds {DS}"  # the run's ds
            assert "lost raw → warehouse" in row.inner_text()
            divergent = row.locator("td.divergent")
            assert divergent.count() == 1 and divergent.get_attribute("data-hop") == "warehouse"
            assert divergent.inner_text().strip().startswith("48")
            assert divergent.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(254, 202, 202)"
            chart = frame.locator("svg#chart")
            assert chart.count() == 1 and chart.locator("circle").count() >= 3  # a point per hop on DS
            assert chart.bounding_box()["width"] > 300  # laid out, not collapsed
        finally:
            page.screenshot(path=str(shot))
        # the nav entry: Browse → Tally ledger, the newest ds, in the same logged-in session
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Tally ledger").click()
        page.wait_for_url("**/plugin/tally-ledger")
        nav = page.frame_locator("iframe[src*='tally/ledger']")
        expect(nav.locator("h1")).to_contain_text(f"Tally ledger · {DAG_ID} · ds ", timeout=WAIT_MS)
        assert nav.locator("svg#chart").count() == 1
    width, height, _, rows = png.pixels(shot)
    assert (width, height) == (1400, 1000)
    assert len(set(rows)) > 200  # not a blank page: hundreds of distinct pixel rows
    # the divergent cell and the chart's red band are on screen, inside the Airflow UI
    assert png.count_colour(shot, DIVERGENT_FILL, tolerance=2) > 2000
