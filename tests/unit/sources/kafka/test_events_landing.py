"""Micro-batches into the lake without Kafka: naming, manifests, replays, reconciliation."""

from __future__ import annotations

import zlib
from collections import Counter
from datetime import UTC, datetime

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tally.lake.checksum import checksum
from tally.sources.kafka import layout
from tally.sources.kafka.landing import Msg, land_batch
from tally.sources.kafka.ledger import ds_summary
from tally_local.events_generator import EventScale, generate_events

TOPIC = "tally.activity"
RAW, QUAR = layout.dataset_path(TOPIC), layout.dataset_path(TOPIC, layout.QUARANTINE_ZONE)
AS_OF = datetime(2026, 1, 10, tzinfo=UTC)


def _topic(partitions: int = 3):
    """The generator's messages as a 3-partition log, and the ground truth per message."""
    messages = generate_events(EventScale(days=3, events_per_day=300, malformed_rate=0.04), seed=5, as_of=AS_OF)
    logs: dict[int, list[tuple[Msg, object]]] = {p: [] for p in range(partitions)}
    for m in messages:
        p = zlib.crc32(m.key) % partitions
        logs[p].append((Msg(TOPIC, p, len(logs[p]), m.timestamp_ms, m.key, m.value), m))
    return logs


def _stream(logs, committed: dict[int, int]):
    """Records from the committed offsets on, interleaved across partitions like polls are."""
    iters = {p: iter(log[committed.get(p, 0):]) for p, log in logs.items()}
    while iters:
        for p in list(iters):
            for _ in range(37):
                item = next(iters[p], None)
                if item is None:
                    del iters[p]
                    break
                yield item[0]


def _run(lake, logs, committed: dict[int, int], batch_size: int, crash_after: int | None = None) -> dict[int, int]:
    """Land batches; commit offsets after each like the consumer does, except the crashed one."""
    committed = dict(committed)
    batch: list[Msg] = []
    number = 0

    def flush():
        nonlocal batch, number
        number += 1
        result = land_batch(lake, TOPIC, batch, number)
        assert result.landed + result.quarantined == len(batch)
        if crash_after is not None and number == crash_after:
            raise RuntimeError("crash between the lake write and the offset commit")
        for p, (_, last) in result.ranges.items():
            committed[p] = last + 1
        batch = []

    for rec in _stream(logs, committed):
        batch.append(rec)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return committed


def _assert_exactly_once(lake, logs):
    truth = [m for log in logs.values() for _, m in log]
    valid_ids = sorted(m.event_id for m in truth if m.valid)
    bad = Counter(m.expected_reason for m in truth if not m.valid)
    landed, quarantined = [], Counter()
    for ds in lake.committed(RAW):
        table = lake.read_table(RAW, ds)
        landed += table.column("event_id").to_pylist()
        summary = ds_summary(lake, TOPIC, ds)
        assert summary["row_count"] == table.num_rows
        assert summary["key_checksum"] == checksum(table.column("event_id").to_pylist())
        assert summary["messages"] == summary["row_count"] + summary["quarantined"]
        assert summary["messages"] == sum(1 for m in truth if m.ds == ds)
        assert set(table.column("_kafka_timestamp").to_pylist()) and all(
            t.strftime("%Y-%m-%d") == ds for t in table.column("_kafka_timestamp").to_pylist())
    for ds in lake.committed(QUAR):
        quarantined.update(lake.read_table(QUAR, ds).column("reason").to_pylist())
    assert sorted(landed) == valid_ids  # no loss, no duplicate
    assert quarantined == bad
    # nothing a manifest does not list is left behind
    for zone in (RAW, QUAR):
        for ds in lake.committed(zone):
            folder = pafs.FileSelector(lake.path(lake.partition(zone, ds)))
            on_disk = {i.base_name for i in lake.fs.get_file_info(folder)}
            assert on_disk == {*lake.read_manifest(zone, ds)["files"], "_manifest.json"}


def test_one_pass_lands_every_message_once_and_reconciles(lake):
    logs = _topic()
    _run(lake, logs, {}, batch_size=150)
    _assert_exactly_once(lake, logs)
    manifest = lake.read_manifest(RAW, lake.committed(RAW)[0])
    assert manifest["mode"] == "stream" and manifest["key"] == "event_id"
    assert all(layout.parse_file_name(f) for f in manifest["files"])
    assert set(manifest["watermark"]["partitions"]) <= {"0", "1", "2"}


def test_quarantine_rows_carry_topic_partition_offset_raw_value_and_reason(lake):
    logs = _topic()
    _run(lake, logs, {}, batch_size=10_000)
    ds = lake.committed(QUAR)[0]
    row = lake.read_table(QUAR, ds).to_pylist()[0]
    original = logs[row["partition"]][row["offset"]]
    assert row["topic"] == TOPIC and row["reason"] == original[1].expected_reason
    assert row["raw_value"] == original[1].value.decode("utf-8", errors="backslashreplace")


@pytest.mark.parametrize(("first_size", "replay_size"), [(200, 200), (200, 130), (130, 350)])
def test_a_crash_before_the_commit_replays_without_duplicates_or_loss(lake, first_size, replay_size):
    logs = _topic()
    with pytest.raises(RuntimeError, match="crash"):
        _run(lake, logs, {}, batch_size=first_size, crash_after=3)
    # the offsets committed before the crash: batches 1 and 2 only
    committed = {}
    batch_no = 0
    batch: list[Msg] = []
    for rec in _stream(logs, {}):
        batch.append(rec)
        if len(batch) >= first_size:
            batch_no += 1
            if batch_no == 3:
                break
            for r in batch:
                committed[r.partition] = r.offset + 1
            batch = []
    # the crashed batch is in the lake, uncommitted in Kafka; the replay may cut batches elsewhere
    _run(lake, logs, committed, batch_size=replay_size)
    _assert_exactly_once(lake, logs)


def test_replaying_everything_again_overwrites_in_place(lake):
    logs = _topic()
    _run(lake, logs, {}, batch_size=300)
    files = {ds: lake.read_manifest(RAW, ds)["files"] for ds in lake.committed(RAW)}
    _run(lake, logs, {}, batch_size=300)  # offsets reset to the beginning: same batches, same names
    assert {ds: lake.read_manifest(RAW, ds)["files"] for ds in lake.committed(RAW)} == files
    _assert_exactly_once(lake, logs)


def test_files_are_parquet_with_the_event_schema(lake):
    logs = _topic()
    _run(lake, logs, {}, batch_size=1000)
    ds = lake.committed(RAW)[0]
    f = lake.files(RAW, ds)[0]
    schema = pq.read_schema(f, filesystem=lake.fs)
    assert schema.names[:6] == ["event_id", "event_type", "account_id", "user_email", "occurred_at", "properties"]
    assert str(schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"


def test_the_event_schema_is_the_parsed_fields_then_the_kafka_lineage():
    from tally.sources.kafka.schema import EVENT_SCHEMA, FIELDS, KEY

    assert FIELDS[0] == KEY
    assert EVENT_SCHEMA.names == [*FIELDS, "_kafka_topic", "_kafka_partition", "_kafka_offset", "_kafka_timestamp"]


def test_a_batch_killed_before_its_manifest_leaves_the_previous_version_whole(lake, monkeypatch):
    """Raw Kafka: a micro-batch's files written, its ds manifest not → the ds's committed version
    still reads whole (the next run replays the batch: offsets were not committed)."""
    from support.lake_faults import Killed, assert_previous_version_whole, kill_before_manifest, snapshot

    log = [r for r, _ in _topic(partitions=1)[0]]
    ds = layout.ds_of(log[0].timestamp)
    same_day = [r for r in log if layout.ds_of(r.timestamp) == ds]
    land_batch(lake, TOPIC, same_day[:50], 1)
    before = snapshot(lake, RAW, ds)
    kill_before_manifest(monkeypatch, RAW)
    with pytest.raises(Killed):
        land_batch(lake, TOPIC, same_day[50:100], 2)
    assert_previous_version_whole(lake, RAW, ds, before, "event_id")
    assert ds_summary(lake, TOPIC, ds)["row_count"] == before["row_count"]
