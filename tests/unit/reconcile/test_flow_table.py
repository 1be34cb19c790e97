"""The flow table shows rows AND key checksums per hop, and dims a hop the run did not write."""

from __future__ import annotations

from rich.console import Console

from tally.ledger import Entry
from tally.reconcile.report import flow_records, flow_table
from tally.reconcile.verdict import Code, DagRun, judge

DS = "2026-04-30"
OPP = "salesforce.Opportunity"


def _render(table) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def _flow():
    return {OPP: {"source": Entry(DS, OPP, "source", 7, None, {}),
                  "raw": Entry(DS, OPP, "raw", 7, "77777777deadbeef", {}),
                  "warehouse": Entry(DS, OPP, "warehouse", 10, "aaaaaaaa00000000", {})}}


def test_counts_and_checksums_per_hop_and_the_earlier_runs_hop_marked():
    run = DagRun("r", "failed", {"land.extract_salesforce_Opportunity": "success", "land.gate_raw": "failed",
                                 "load_warehouse": "upstream_failed"})
    judgement = judge(_flow(), run, DS)
    text = _render(flow_table(_flow(), DS, judgement))
    assert "77777777deadbeef" in text and "aaaaaaaa00000000" in text
    assert text.count("(earlier run)") == 2  # the warehouse cell, and the caption explaining it
    assert "not loaded: land.gate_raw failed, load_warehouse skipped (upstream_failed)" in text
    record = next(r for r in flow_records(_flow(), judgement) if r["dataset"] == OPP)
    assert record["code"] == Code.NOT_LOADED
    assert (record["raw_rows"], record["raw_key_checksum"], record["raw_this_run"]) == (7, "77777777deadbeef", True)
    assert (record["warehouse_rows"], record["warehouse_this_run"]) == (10, False)
    assert record["curated_rows"] is None


def test_without_a_judgement_the_ledger_alone_names_the_loss():
    text = _render(flow_table(_flow(), DS))
    assert "lost raw→warehouse: row count 7 -> 10" in text
    assert "(earlier run)" not in text
