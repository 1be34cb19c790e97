"""Full reconciliation: the bisection diff, the classification and the DAG's wiring.

The diff is exercised here against sides held in memory (a second implementation of the
three queries, not a stand-in for Postgres: the integration tests run the SQL sides)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from tally import catalog, contract
from tally.reconcile.full import classify, cutoff_of, erp_datasets
from tally.reconcile.full.bisect import ABSENT, MOD, diff
from tally.reconcile.full.sides import from_us, to_us

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "tally_reconcile.py"


class Memory:
    """A side over ``{key: version}`` (``tombstones``: keys the checksum must leave out)."""

    def __init__(self, rows: dict[int, int], tombstones: set[int] = frozenset()) -> None:
        self.data, self.tombstones = rows, set(tombstones)
        self.listed = 0

    def bounds(self):
        return (min(self.data), max(self.data)) if self.data else None

    def checksums(self, lo, hi, width):
        out: dict[int, tuple[int, int]] = {}
        for k, v in self.data.items():
            if lo <= k < hi and k not in self.tombstones:
                c, h = out.get((k - lo) // width, (0, 0))
                out[(k - lo) // width] = (c + 1, (h + hash((k, v))) % MOD)
        return out

    def rows(self, lo, hi):
        found = {k: (v, k in self.tombstones) for k, v in self.data.items() if lo <= k < hi}
        self.listed += len(found)
        return found

    def version(self, row):
        return ABSENT if row[1] else row[0]


def test_bisection_finds_exactly_the_differing_keys_and_lists_only_a_few():
    rng = random.Random(5)
    source = {k: rng.randrange(10**12) for k in range(1, 200_001)}
    target = dict(source)
    del target[17]  # missing
    del target[150_000]
    target[199_999] = target[199_999] + 1  # stale
    target[250_000] = 1  # extra (beyond the source's range)
    source_side, target_side = Memory(source), Memory(target, tombstones={5})  # 5: tombstoned in the warehouse
    result = diff(source_side, target_side, top_buckets=64, factor=8, leaf_rows=50)
    assert set(result.differences) == {5, 17, 150_000, 199_999, 250_000}
    assert result.differences[17] == ((source[17], False), None)
    assert result.stats.levels >= 3 and source_side.listed + target_side.listed < 1_000
    assert (result.stats.source_rows, result.stats.target_rows) == (200_000, 199_998)  # live keys only


def test_equal_sides_list_nothing_and_empty_sides_are_equal():
    rows = {k: k * 7 for k in range(1000, 3000)}
    a, b = Memory(rows), Memory(dict(rows))
    result = diff(a, b, top_buckets=16, factor=4, leaf_rows=10)
    assert result.differences == {} and a.listed == b.listed == 0
    assert diff(Memory({}), Memory({})).differences == {}
    assert set(diff(Memory({}), Memory({4: 1})).differences) == {4}


def test_classification_against_the_cutoff_and_the_quarantine():
    cut = to_us(cutoff_of("2026-04-30"))
    old, older, late = cut - 5_000_000, cut - 9_000_000, cut + 1
    issues = classify({
        1: ((old,), None),  # missing
        2: (None, (old, False, "2026-04-30")),  # extra
        3: ((old,), (older, False, "2026-04-29")),  # stale, source newer: healable
        4: ((older,), (old, False, "2026-04-30")),  # stale, warehouse newer: not healable
        5: ((late,), (old, False, "2026-04-30")),  # in flight
        6: ((None,), None),  # unversioned
        7: ((old,), None),  # quarantined
        8: ((older,), (cut, True, "2026-04-30")),  # missing behind a newer tombstone
    }, cut, quarantined={7: {old}})
    got = {i.key: (i.category, i.healable) for i in issues}
    assert got == {1: ("missing", True), 2: ("extra", True), 3: ("stale", True), 4: ("stale", False),
                   5: ("in_flight", False), 6: ("unversioned", False), 7: ("quarantined", False),
                   8: ("missing", False)}


def test_versions_and_cutoff():
    assert cutoff_of("2026-04-30").isoformat() == "2026-05-01T00:00:00+00:00"
    moment = from_us(1_777_593_600_123_456)
    assert to_us(moment) == 1_777_593_600_123_456 and moment.microsecond == 123_456
    assert [d.name for d in erp_datasets(["customers", "erp.payments"])] == ["customers", "payments"]
    with pytest.raises(ValueError, match="ERP tables only"):
        erp_datasets(["salesforce.Account"])


def test_dag_reconciles_every_erp_table_then_checks():
    spec = importlib.util.spec_from_file_location("tally_reconcile_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(catalog.ERP) == list(contract.ERP_TABLES)
    dag = module.tally_reconcile()
    assert dag.tags and dag.doc_md and dag.owner == "data-platform"
    assert not dag.catchup and dag.max_active_runs == 1
    for name in catalog.ERP:
        assert "check" in dag.get_task(f"reconcile_erp_{name}").downstream_task_ids
    assert dag.get_task("check").retries == 0
