"""The ledger: which hop a loss happened at."""

from __future__ import annotations

from tally.ledger import Entry, first_divergence


def test_first_divergence_names_the_hop():
    def e(hop, n, c="a"):
        return Entry("2026-01-01", "x", hop, n, c, {})

    assert first_divergence({"source": e("source", 3, None), "raw": e("raw", 3), "warehouse": e("warehouse", 3)}) is None
    assert first_divergence({"raw": e("raw", 3), "warehouse": e("warehouse", 2)})[:2] == ("raw", "warehouse")
    assert first_divergence({"raw": e("raw", 3, "a"), "warehouse": e("warehouse", 3, "b")})[2].startswith("key checksum")
