"""Retention (tally.lake.retention) on a small lake: state keeps its newest ds, every month's last
committed ds and its newest valid ds; curated keeps its newest ds; raw and quarantine are never
pruned; apply uncommits and removes exactly the planned partitions."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from tally import catalog
from tally.lake import Manifest, PartitionWriter, state_path
from tally.lake.checksum import checksum
from tally.lake.retention import Prune, RetentionPolicy, apply, month_ends, plan
from tally.lake.state import consumed_ids, layout

DATASET = catalog.ERP["customers"]
RAW, STATE, CURATED = DATASET.lake_path, state_path(DATASET), "curated/opportunities"
SCHEMA = pa.schema([pa.field("customer_id", pa.int64()), pa.field("updated_at", pa.timestamp("us", tz="UTC"))])
TODAY = date(2026, 2, 10)
DAYS = [(date(2026, 1, 25) + timedelta(days=i)).isoformat() for i in range(17)]  # 01-25 … 02-10
POLICY = RetentionPolicy(state_keep_days=5, curated_keep_days=5)


def _commit(lake, path: str, ds: str, extra: dict | None = None) -> Manifest:
    writer = PartitionWriter(lake, path, ds)
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    writer.write(SCHEMA, [pa.RecordBatch.from_pydict({"customer_id": [1, 2], "updated_at": [ts, ts]}, schema=SCHEMA)])
    time.sleep(0.002)
    return writer.commit(Manifest(dataset="x", key="customer_id", files=list(writer.files), row_count=2,
                                  key_checksum=checksum([1, 2]), extra=extra or {}))


@pytest.fixture()
def zones(lake):
    """raw, quarantine, state (no state for 01-31: January's last state is 01-30) and curated."""
    for ds in DAYS:
        _commit(lake, RAW, ds)
        _commit(lake, "quarantine/erp/customers", ds)
        _commit(lake, CURATED, ds)
    for ds in DAYS:
        if ds != "2026-01-31":
            _commit(lake, STATE, ds, {"consumed": consumed_ids(lake, DATASET, ds), "layout": layout(DATASET)})
    return lake


def _pruned(prunes: list[Prune], zone: str) -> list[str]:
    return [p.ds for p in prunes if p.zone == zone]


def test_month_ends_are_the_last_committed_ds_of_each_month():
    assert month_ends(["2026-01-05", "2026-01-30", "2026-02-01", "2026-02-28", "2026-03-02"]) == {
        "2026-01-30", "2026-02-28", "2026-03-02"}


def test_plan_keeps_the_newest_ds_month_ends_and_never_raw_or_quarantine(zones):
    prunes = plan(zones, POLICY, TODAY)
    assert {p.zone for p in prunes} == {"state", "curated"}
    # state: newest 5 (02-06 … 02-10), January's last committed state (01-30), February's (02-10)
    assert _pruned(prunes, "state") == [*DAYS[:5], *DAYS[7:12]]
    assert "2026-01-30" not in _pruned(prunes, "state")
    # curated: newest 5 only
    assert _pruned(prunes, "curated") == DAYS[:12]
    # the default policy keeps 35 ds: nothing here is old enough
    assert plan(zones, RetentionPolicy(), TODAY) == []


def test_the_newest_valid_state_is_kept_however_old(zones):
    _commit(zones, RAW, "2026-01-28")  # re-landed: every state from 01-28 on is stale
    prunes = plan(zones, POLICY, TODAY)
    assert "2026-01-27" not in _pruned(prunes, "state")  # the newest valid state: a build's base
    assert _pruned(prunes, "state") == ["2026-01-25", "2026-01-26", "2026-01-28", "2026-01-29", *DAYS[7:12]]


def test_apply_removes_exactly_the_planned_partitions(zones):
    prunes = plan(zones, POLICY, TODAY)
    removed = apply(zones, prunes)
    assert removed == prunes
    assert zones.committed(STATE) == ["2026-01-30", *DAYS[12:]]
    assert zones.committed(CURATED) == DAYS[12:]
    assert not zones.exists(zones.path(f"{CURATED}/ds={DAYS[0]}"))  # files gone too
    assert zones.committed(RAW) == DAYS and zones.committed("quarantine/erp/customers") == DAYS
    assert plan(zones, POLICY, TODAY) == []
    with pytest.raises(ValueError, match="kept forever"):
        apply(zones, [Prune("raw", RAW, DAYS[0], "no")])
    assert zones.committed(RAW) == DAYS
