"""The ledger's accounting of a landed dataset: source count, landed, quarantined and tombstones
(issue 16, item 4: the "source" column showed the rows expected to land, and quarantine was only in
the JSON)."""

from __future__ import annotations

from tally.ledger import ACCOUNTING, Accounting, Entry, accounting
from tally.stages.extract import expected_raw_rows

DS = "2026-12-02"


def hops_of(manifest: dict, details: dict) -> dict[str, Entry]:
    """The source and raw entries as ``tally.stages.extract.extract`` records them."""
    return {"source": Entry(DS, "erp.order_lines", "source", expected_raw_rows(manifest), None, details),
            "raw": Entry(DS, "erp.order_lines", "raw", manifest["row_count"], "abc", details)}


def test_quarantined_rows_and_tombstones_are_counted_apart_from_the_source_count():
    # the source counted 100 rows; 3 were quarantined, 97 landed, plus 2 tombstones in the raw zone
    manifest = {"source_count": 100, "tombstones": 2, "quarantined": 3, "row_count": 99}
    details = {"source_count": 100, "tombstones": 2, "quarantined": 3, "quarantine": {"null order_id": 3}}
    hops = hops_of(manifest, details)
    assert hops["source"].row_count == 99  # what must land, not what the source counted
    acc = accounting(hops)
    assert acc == Accounting(source_count=100, landed=97, quarantined=3, tombstones=2)
    assert acc.balanced and acc.cells() == ["100", "97", "3", "2"]
    assert list(acc.as_record()) == [name for name, _ in ACCOUNTING]
    assert [header for _, header in ACCOUNTING] == ["source count", "landed", "quarantined", "tombstones"]


def test_a_source_without_quarantine_or_deletes_counts_what_landed():
    manifest = {"source_count": 1200, "row_count": 1200}
    acc = accounting(hops_of(manifest, {"mode": "incremental"}))
    assert acc == Accounting(source_count=1200, landed=1200, quarantined=0, tombstones=0)


def test_lost_rows_show_as_an_unbalanced_account():
    manifest = {"source_count": 100, "tombstones": 0, "quarantined": 3, "row_count": 95}  # 2 rows lost
    acc = accounting(hops_of(manifest, {"source_count": 100, "tombstones": 0, "quarantined": 3}))
    assert (acc.landed, acc.balanced) == (95, False)


def test_datasets_not_landed_from_a_source_have_no_accounting():
    assert accounting({"curated": Entry(DS, "order_links", "curated", 5, "x", {})}) is None
