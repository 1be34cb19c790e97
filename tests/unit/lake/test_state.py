"""The state zone's validity rules (tally.lake.state), on small lakes written with pyarrow: a
state is a valid base exactly while the raw commits it records are the current ones, its layout
is the dataset's and its files match its commit record."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from support.lake_faults import drop_rows

from tally import catalog
from tally.lake import Manifest, PartitionWriter, commit_id, stale_states, state_path, valid_base
from tally.lake.checksum import checksum
from tally.lake.state import consumed_ids, layout, staleness

DATASET = catalog.ERP["customers"]
RAW = DATASET.lake_path
STATE = state_path(DATASET)
KEY_SCHEMA = pa.schema([pa.field("customer_id", pa.int64()), pa.field("updated_at", pa.timestamp("us", tz="UTC"))])


def _commit(lake, path: str, ds: str, keys: list[int], extra: dict | None = None) -> Manifest:
    writer = PartitionWriter(lake, path, ds)
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    writer.write(KEY_SCHEMA, [pa.RecordBatch.from_pydict({"customer_id": keys, "updated_at": [ts] * len(keys)},
                                                         schema=KEY_SCHEMA)])
    time.sleep(0.002)  # distinct committed_at for a re-commit of the same content
    return writer.commit(Manifest(dataset="x", key="customer_id", files=list(writer.files), row_count=len(keys),
                                  key_checksum=checksum(keys), extra=extra or {}))


def _raw(lake, ds: str, keys: list[int]) -> Manifest:
    return _commit(lake, RAW, ds, keys)


def _state(lake, ds: str, keys: list[int] = (1,), **overrides) -> Manifest:
    """A state for ``ds`` recording the raw commits current now (what a build would record)."""
    extra = {"consumed": consumed_ids(lake, DATASET, ds), "layout": layout(DATASET), **overrides}
    return _commit(lake, STATE, ds, list(keys), extra)


D = [f"2026-01-{d:02d}" for d in range(1, 10)]


def test_commit_id_is_stable_for_a_commit_and_changes_with_a_re_commit(lake):
    first = _raw(lake, D[0], [1, 2])
    assert commit_id(lake.read_manifest(RAW, D[0])) == commit_id(first) == commit_id(first.to_dict())
    again = _raw(lake, D[0], [1, 2])  # same rows, a new commit
    assert commit_id(again) != commit_id(first)
    assert consumed_ids(lake, DATASET, D[0]) == {D[0]: commit_id(again)}
    assert state_path(DATASET) == state_path("erp.customers") == "state/erp/customers"


def test_no_state_then_the_newest_valid_state_before_ds(lake):
    for d in D[:4]:
        _raw(lake, d, [1])
    assert valid_base(lake, DATASET, D[3]) == (None, None)  # a first, full build
    _state(lake, D[1])
    _state(lake, D[2])
    assert valid_base(lake, DATASET, D[3]) == (D[2], None)
    assert valid_base(lake, DATASET, D[2]) == (D[1], None)  # only states before ds
    assert stale_states(lake, DATASET) == []


def test_a_re_committed_raw_ds_makes_that_state_and_every_later_one_stale(lake):
    for d in D[:5]:
        _raw(lake, d, [1])
    for d in D[:5]:
        _state(lake, d)
    _raw(lake, D[2], [1, 2])  # a re-run of an old ds
    assert stale_states(lake, DATASET) == [
        (d, f"raw ds={D[2]} was re-committed after it was built") for d in D[2:5]]
    base, reason = valid_base(lake, DATASET, D[5])
    assert base == D[1]
    assert reason.startswith(f"state ds={D[4]} is stale: raw ds={D[2]} was re-committed")
    assert f"state ds={D[2]} is stale" in reason


def test_a_raw_ds_committed_late_below_a_state_or_removed_makes_it_stale(lake):
    _raw(lake, D[0], [1])
    _raw(lake, D[2], [1])
    _state(lake, D[0])
    _state(lake, D[2])
    _raw(lake, D[1], [3])  # a backfill landing under an existing state
    assert stale_states(lake, DATASET) == [(D[2], f"raw ds={D[1]} was committed after it was built")]
    assert valid_base(lake, DATASET, D[3])[0] == D[0]
    _state(lake, D[2])  # rebuilt: valid again
    lake.fs.delete_file(lake.path(RAW, f"ds={D[0]}", "_manifest.json"))  # a raw ds uncommitted
    assert [r for _, r in stale_states(lake, DATASET)] == [f"raw ds={D[0]} is no longer committed"] * 2
    assert valid_base(lake, DATASET, D[3])[0] is None


def test_raw_committed_after_the_state_ds_does_not_matter(lake):
    _raw(lake, D[0], [1])
    _state(lake, D[0])
    _raw(lake, D[1], [2])
    assert valid_base(lake, DATASET, D[1]) == (D[0], None)
    assert stale_states(lake, DATASET) == []


def test_damaged_state_files_or_another_layout_are_stale(lake):
    _raw(lake, D[0], [1])
    _raw(lake, D[1], [1])
    _state(lake, D[0], keys=list(range(10)))
    _state(lake, D[1], keys=list(range(10)))
    drop_rows(lake, STATE, D[1], 3)
    (stale,) = stale_states(lake, DATASET)
    assert stale[0] == D[1] and "its files do not match its commit record" in stale[1] and "7 rows" in stale[1]
    assert valid_base(lake, DATASET, D[2])[0] == D[0]
    _state(lake, D[1], layout="0" * 16)
    assert stale_states(lake, DATASET)[0][1].startswith("built for another layout")
    wider = dataclasses.replace(DATASET, fields=(*DATASET.fields, catalog.Field("segment", "string")))
    assert layout(wider) != layout(DATASET)
    assert [d for d, _ in stale_states(lake, wider)] == [D[0], D[1]]  # a column added: every state is stale


def test_a_state_without_a_consumed_record_is_stale(lake):
    _raw(lake, D[0], [1])
    _commit(lake, STATE, D[0], [1], {"layout": layout(DATASET)})
    assert stale_states(lake, DATASET) == [(D[0], "it records no consumed raw commits")]
    manifest = lake.read_manifest(STATE, D[0])
    assert staleness(lake, DATASET, manifest, consumed_ids(lake, DATASET, D[0])) is not None


@pytest.mark.parametrize("count", [2, 6])
def test_valid_base_reason_lists_what_it_passed_over(lake, count):
    for d in D[:count]:
        _raw(lake, d, [1])
        _state(lake, d)
    _raw(lake, D[0], [9])  # every state is stale now
    base, reason = valid_base(lake, DATASET, D[count])
    assert base is None and reason.startswith(f"state ds={D[count - 1]} is stale")
    assert reason.endswith(f"state ds={D[0]} is stale: raw ds={D[0]} was re-committed after it was built")


def test_stale_at_names_the_datasets_whose_state_for_ds_predates_a_re_landed_day(lake):
    from tally.lake.state import stale_at

    for d in D[:3]:
        _raw(lake, d, [1])
    for d in D[:3]:
        _state(lake, d)
    assert stale_at(lake, D[2], ("erp.customers",)) == {}
    _raw(lake, D[1], [1, 2])  # day 2 landed again after days 2 and 3 were built
    assert stale_at(lake, D[0], ("erp.customers",)) == {}  # day 1 did not consume day 2
    for d in D[1:3]:
        assert stale_at(lake, d, ("erp.customers",)) == {
            "erp.customers": f"state ds={d} is stale: raw ds={D[1]} was re-committed after it was built"}
    assert stale_at(lake, D[5], ("erp.customers",)) == {}  # no state for that ds: nothing to say
