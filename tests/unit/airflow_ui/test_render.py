"""The ledger view's HTML (tally.airflow.ui.render): the divergent hop marked, gates linked to
their Data Docs pages, alerts listed, and a chart where a dip shows."""

from __future__ import annotations

import re

from tally.airflow.ui import render
from tally.ledger import Entry
from tally.reconcile.run_view import Day, Gate, RunView, docs_pages, flows

DS = "2026-12-02"


def entry(dataset: str, hop: str, rows: int, checksum: str | None = "c1") -> Entry:
    return Entry(DS, dataset, hop, rows, checksum, {})


def view() -> RunView:
    table = {
        "erp.payments": {h: entry("erp.payments", h, n) for h, n in
                         (("source", 100), ("raw", 100), ("curated", 100), ("warehouse", 93))},
        "salesforce.Account": {h: entry("salesforce.Account", h, 40) for h in ("source", "raw", "warehouse")},
    }
    gates = [Gate("raw", "erp.payments", False, 8, 1, "raw.erp.payments: 6/7 passed", ["raw.erp.payments",
                  "schema.erp.payments"], {"raw.erp.payments": "validations/raw/erp/payments/x.html"})]
    alerts = [{"id": 7, "gate": "gate_warehouse", "category": "warehouse_gate", "title": "Warehouse gate failed",
               "summary": "erp.payments: 7 rows <lost>", "occurrences": 2, "created_at": "2026-12-03 01:02:03",
               "payload": {"links": {"runbook": "https://example.invalid/runbook.md#warehouse-gate-failed",
                                     "data_docs": "file:///tmp/x.html"}}}]
    return RunView(DS, flows(table), gates, alerts)


def test_the_first_divergent_hop_is_highlighted_and_named():
    html = render.page(view(), [], dag_id="tally_daily", run_id="scheduled__x")
    row = re.search(r"<tr data-dataset='erp.payments'>.*?</tr>", html).group(0)
    assert re.search(r"class='num divergent' data-hop='warehouse' data-rows='93'", row)
    assert re.search(r"class='num before-divergent' data-hop='curated'", row)
    assert "lost curated → warehouse" in row and "row count 100 -&gt; 93" in row
    ok_row = re.search(r"<tr data-dataset='salesforce.Account'>.*?</tr>", html).group(0)
    assert "divergent" not in ok_row and "<td class='missing' data-hop='curated'>" in ok_row
    assert "1 of 2 datasets diverge" in html


def test_gates_link_to_their_data_docs_pages_and_alerts_are_escaped():
    html = render.page(view(), [], dag_id="tally_daily")
    assert "<a href='data-docs/validations/raw/erp/payments/x.html' target='_blank'>raw.erp.payments</a>" in html
    assert "FAILED" in html and "1 of 8 failed" in html
    assert "schema.erp.payments" in html  # no page: named, not linked
    assert "7 rows &lt;lost&gt;" in html and "<lost>" not in html
    assert "#warehouse-gate-failed" in html and "file:///tmp/x.html" not in html  # no file: links in a web page
    assert "<a href='data-docs/" not in render.page(view(), [], dag_id="tally_daily", docs_base=None)


def test_the_chart_marks_the_dip_the_gap_and_the_selected_ds():
    days = [Day("2026-11-30", {"source": 100, "raw": 100, "warehouse": 100}),
            Day("2026-12-01", {}),
            Day(DS, {"source": 100, "raw": 100, "warehouse": 93}, ("erp.payments",))]
    svg = render.chart_svg(days, selected=DS)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert re.findall(r"class='dip' data-ds='([^']+)'", svg) == [DS]
    assert re.findall(r"class='no-run' data-ds='([^']+)'", svg) == ["2026-12-01"]
    assert "class='selected'" in svg
    points = {(d, h): (int(r), float(cy)) for d, h, r, cy in re.findall(
        r"class='point' data-ds='([^']+)' data-hop='([^']+)' data-rows='(\d+)' cx='[\d.]+' cy='([\d.]+)'", svg)}
    assert points[(DS, "warehouse")][0] == 93
    assert points[(DS, "warehouse")][1] > points[(DS, "raw")][1]  # lower on screen: the dip
    assert f"href='ledger?ds={DS}&amp;days=3'" in svg
    assert f"href='ledger?ds={DS}&amp;days=3&amp;dataset=erp.payments'" in render.chart_svg(days, dataset="erp.payments")
    # the missing day splits each line in two
    assert len(re.findall(r"class='hop-line' data-hop='raw'", svg)) == 2


def test_docs_pages_take_the_newest_page_of_the_ds():
    entries = [{"expectation_suite_name": "raw.erp.payments", "run_name": DS, "filepath": "new.html"},
               {"expectation_suite_name": "raw.erp.payments", "run_name": DS, "filepath": "old.html"},
               {"expectation_suite_name": "raw.erp.orders", "run_name": "2026-12-01", "filepath": "other.html"}]
    assert docs_pages(entries, DS) == {"raw.erp.payments": "new.html"}
