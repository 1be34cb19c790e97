"""Compaction of raw partitions (tally.lake.compact) on small lakes written with PartitionWriter:
the same rows, the same manifest values and the same commit identity in fewer files; a ds that
does not match its commit record, a recent ds and a Kafka ds are never rewritten."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pyarrow as pa
import pytest
from support.lake_faults import drop_rows

from tally import catalog
from tally.lake import MANIFEST, Manifest, PartitionWriter, commit_id, state_path, valid_base
from tally.lake.checksum import checksum
from tally.lake.compact import KAFKA_EXCLUDED, CompactionPolicy, compact, plan, run
from tally.lake.state import consumed_ids, layout, staleness
from tally.lake.verify import PartitionMismatch

DATASET = catalog.ERP["customers"]
RAW = DATASET.lake_path
SCHEMA = pa.schema([pa.field("customer_id", pa.int64()), pa.field("name", pa.string()),
                    pa.field("updated_at", pa.timestamp("us", tz="UTC"))])
TODAY = date(2026, 3, 10)
OLD = ["2026-03-01", "2026-03-02", "2026-03-03"]
POLICY = CompactionPolicy(target_rows=50)
EXTRA = {"tombstones": 2, "quarantined": 1, "quarantine": {"path": "quarantine/erp/customers/ds=x", "files": ["q"]}}


def _batch(keys: list[int]) -> pa.RecordBatch:
    ts = datetime(2026, 3, 1, tzinfo=UTC)
    return pa.RecordBatch.from_pydict({"customer_id": keys, "name": [f"c{k}" for k in keys],
                                       "updated_at": [ts] * len(keys)}, schema=SCHEMA)


def _land(lake, ds: str, files: int, rows: int = 10, path: str = RAW, first: int = 0) -> Manifest:
    """Commit ``files`` files of ``rows`` rows each (one write per micro-batch, as a stream lands)."""
    writer = PartitionWriter(lake, path, ds)
    keys: list[int] = []
    for i in range(files):
        batch_keys = list(range(first + i * rows, first + (i + 1) * rows))
        writer.write(SCHEMA, [_batch(batch_keys)])
        keys += batch_keys
    time.sleep(0.002)  # a distinct committed_at for a re-commit
    return writer.commit(Manifest(dataset=DATASET.dataset_id, key="customer_id", files=list(writer.files),
                                  row_count=len(keys), key_checksum=checksum(keys), source_count=len(keys) + 1,
                                  watermark={"start": "a", "end": "b"}, mode="incremental", extra=dict(EXTRA)))


def _listing(lake, path: str, ds: str) -> dict[str, int]:
    import pyarrow.fs as pafs

    folder = lake.path(f"{path}/ds={ds}")
    return {i.base_name: i.size for i in lake.fs.get_file_info(pafs.FileSelector(folder))}


def test_compaction_keeps_rows_fields_and_identity_in_fewer_files(lake):
    old = _land(lake, OLD[0], files=12)
    before = lake.read_table(RAW, OLD[0])
    done = compact(lake, RAW, OLD[0], POLICY, now=datetime(2026, 3, 10, tzinfo=UTC))
    assert (done.action, done.files_before, done.files_after) == ("compacted", 12, 3)

    new = lake.read_manifest(RAW, OLD[0])
    assert len(new.files) == 3 and set(new.files).isdisjoint(old.files)
    assert sorted(_listing(lake, RAW, OLD[0])) == sorted([*new.files, MANIFEST])  # old files swept
    assert new.file_rows == dict.fromkeys(new.files, 50) | {new.files[-1]: 20}
    for name in ("row_count", "key_checksum", "source_count", "watermark", "mode", "key", "dataset"):
        assert new[name] == old[name], name
    for name, value in EXTRA.items():
        assert new[name] == value
    assert new["compacted"] == {"at": "2026-03-10T00:00:00+00:00", "files_before": 12, "files_after": 3}
    assert commit_id(new) == commit_id(old)
    assert new.committed_at != old.committed_at
    after = lake.read_table(RAW, OLD[0])  # verified against the new commit record
    assert after.schema.equals(before.schema) and after.equals(before)  # the same rows, in the same order
    lake.verify(RAW, OLD[0])
    # a compacted ds is within the policy: a second run leaves it alone
    assert compact(lake, RAW, OLD[0], POLICY).action == "skip"
    assert lake.read_manifest(RAW, OLD[0]).files == new.files


def test_files_hold_at_most_target_rows_when_batches_do_not_line_up(lake):
    _land(lake, OLD[0], files=10, rows=7)  # 70 rows in batches of 7, 30 rows per file
    before = lake.read_table(RAW, OLD[0])
    compact(lake, RAW, OLD[0], CompactionPolicy(target_rows=30))
    new = lake.read_manifest(RAW, OLD[0])
    assert [new.file_rows[f] for f in new.files] == [30, 30, 10]
    assert lake.read_table(RAW, OLD[0]).equals(before)


def test_a_state_built_before_compaction_stays_valid_and_a_re_landing_still_makes_it_stale(lake):
    for ds in OLD[:2]:
        _land(lake, ds, files=10)
    recorded = consumed_ids(lake, DATASET, OLD[1])
    state = PartitionWriter(lake, state_path(DATASET), OLD[1])
    state.write(SCHEMA, [_batch([1])])
    state_manifest = state.commit(Manifest(dataset="x", key="customer_id", files=list(state.files), row_count=1,
                                           key_checksum=checksum([1]),
                                           extra={"consumed": recorded, "layout": layout(DATASET)}))
    assert [c.action for c in run(lake, POLICY, TODAY)] == ["compacted", "compacted"]
    current = consumed_ids(lake, DATASET, OLD[1])
    assert current == recorded
    assert staleness(lake, DATASET, state_manifest, current) is None
    assert valid_base(lake, DATASET, OLD[2]) == (OLD[1], None)

    _land(lake, OLD[0], files=10)  # an extractor's new commit of the same ds: a new identity
    reason = staleness(lake, DATASET, state_manifest, consumed_ids(lake, DATASET, OLD[1]))
    assert reason == f"raw ds={OLD[0]} was re-committed after it was built"


def test_a_later_commit_carrying_the_values_over_gets_a_new_identity(lake):
    """A heal commits ``manifest.updated(...)``: content_id is carried over, but it vouches for
    the compacted files only, so another set of files is another commit."""
    old = _land(lake, OLD[0], files=10)
    compact(lake, RAW, OLD[0], POLICY)
    compacted = lake.read_manifest(RAW, OLD[0])
    assert commit_id(compacted) == commit_id(old)
    writer = PartitionWriter(lake, RAW, OLD[0])
    writer.write(SCHEMA, [_batch([1000])])
    healed = writer.commit(compacted.updated(files=[*compacted.files, *writer.files], file_rows=None,
                                             row_count=compacted.row_count + 1,
                                             key_checksum=checksum([*range(100), 1000])))
    assert healed["content_id"] == commit_id(old)  # carried over…
    assert commit_id(healed) != commit_id(old)  # …but no longer this commit's identity


def test_a_ds_that_does_not_match_its_commit_record_is_refused_and_left_as_it_was(lake):
    _land(lake, OLD[0], files=10)
    drop_rows(lake, RAW, OLD[0], n=3, index=4)
    before_manifest = lake.read_manifest(RAW, OLD[0]).to_json()
    before_files = _listing(lake, RAW, OLD[0])
    with pytest.raises(PartitionMismatch, match="holds 7 rows, the commit record says 10"):
        compact(lake, RAW, OLD[0], POLICY)
    assert lake.read_manifest(RAW, OLD[0]).to_json() == before_manifest
    assert _listing(lake, RAW, OLD[0]) == before_files  # the attempt's files are gone again
    [item] = run(lake, POLICY, TODAY)
    assert item.action == "refused" and "holds 7 rows" in item.reason


def test_a_changed_key_is_caught_by_the_checksum(lake):
    from support.lake_faults import change_key

    _land(lake, OLD[0], files=10)
    change_key(lake, RAW, OLD[0], "customer_id", 999_999, index=2)
    with pytest.raises(PartitionMismatch, match="key checksum"):
        compact(lake, RAW, OLD[0], POLICY)


def test_dry_run_changes_nothing(lake):
    _land(lake, OLD[0], files=12)
    manifest, files = lake.read_manifest(RAW, OLD[0]).to_json(), _listing(lake, RAW, OLD[0])
    [item] = run(lake, POLICY, TODAY, dry_run=True)
    assert (item.action, item.files_before, item.files_after, item.rows) == ("compact", 12, 3, 120)
    assert lake.read_manifest(RAW, OLD[0]).to_json() == manifest
    assert _listing(lake, RAW, OLD[0]) == files


def test_the_policy_picks_old_ds_with_many_or_small_files_only(lake):
    _land(lake, "2026-03-09", files=12)  # yesterday: still within older_than_days
    _land(lake, OLD[0], files=1, rows=120)  # one file: nothing to merge
    _land(lake, OLD[1], files=3, rows=50)  # 150 rows at 50 per file: already the fewest
    _land(lake, OLD[2], files=2)  # two small files: merged
    found = {c.ds: c for c in plan(lake, POLICY, TODAY)}
    assert sorted(found) == OLD
    assert [found[d].action for d in OLD] == ["skip", "skip", "compact"]
    assert "within the policy" in found[OLD[0]].reason and "already the fewest" in found[OLD[1]].reason
    big = CompactionPolicy(small_bytes=0, max_files=8)  # no file counts as small: only the count matters
    assert plan(lake, big, TODAY, ds=OLD[2])[0].action == "skip"
    assert [c.ds for c in plan(lake, CompactionPolicy(older_than_days=1), TODAY)][-1] == "2026-03-09"
    with pytest.raises(ValueError):
        CompactionPolicy(target_rows=0)


def test_kafka_partitions_are_excluded_with_the_reason(lake):
    _land(lake, OLD[0], files=12, path="raw/kafka/activity")
    [item] = run(lake, POLICY, TODAY)
    assert (item.dataset_id, item.action, item.reason) == ("kafka.activity", "skip", KAFKA_EXCLUDED)
    assert len(lake.read_manifest("raw/kafka/activity", OLD[0]).files) == 12
