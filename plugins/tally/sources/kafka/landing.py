"""Land a Kafka topic of activity events in the lake's raw zone, in micro-batches, exactly once.

One run (``land_events``) joins the consumer group, reads from the group's committed offsets
until the topic is drained (``idle_polls`` empty polls in a row) or ``max_messages`` is
reached, and lands every ``batch_size`` messages as one micro-batch:

1. parse each message; valid ones become rows, the rest quarantine rows (with the reason);
2. write the batch's files: per ds and partition, ``p<p>-o<first>-<last>.parquet`` in
   ``raw/kafka/<name>/ds=<ds>/`` (always, even with 0 rows) and in
   ``quarantine/kafka/<name>/ds=<ds>/`` (when any message was quarantined) — see
   :mod:`tally.sources.kafka.layout` for ds and naming;
3. rewrite each touched ds's manifests, quarantine first, then raw: the raw ``_manifest.json``
   is the commit marker of the ds and lists every file with its offset range and counts (and,
   when its events departed from the contract's fields, their ``schema_drift`` counts; the
   manifest's ``schema_drift`` sums the files it lists: :class:`~tally.sources.kafka.schema.FieldDrift`);
   files an overlapping replay supersedes are dropped from it in the same write, and swept
   after it (``tally.lake.writer.PartitionWriter``, the lake's one commit protocol);
4. only then commit the batch's offsets (last + 1 per partition) to Kafka.

Steps 1–3 of a batch run in a worker thread while the consumer fetches the next batch; step
4 runs on the consumer's thread once the worker is done, so commits stay in offset order
and at most one batch is in flight.

A crash before 4 leaves the offsets uncommitted: the next run reads the same messages again
and lands them under the same names (or supersedes the overlapping ones), so nothing is
duplicated and nothing is lost. A crash after 4 has nothing left to redo.

The landing is single-writer per topic: ds manifests are read-modify-write, so one member of
the group must own every partition. A run that is not assigned every partition, or that
loses partitions to a rebalance, stops without committing anything it has not landed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa

from tally.contract import EVENTS_TOPIC
from tally.lake import Lake, Manifest, PartitionWriter, schema_fingerprint
from tally.lake.checksum import checksum, combine
from tally.sources.kafka import layout
from tally.sources.kafka.schema import EVENT_SCHEMA, KEY, QUARANTINE_SCHEMA, FieldDrift, parse_row, raw_text

log = logging.getLogger("tally.events")

DS_SEMANTICS = "UTC date of the Kafka record timestamp"


class LandingError(RuntimeError):
    """The run could not land safely (no assignment, a rebalance, another writer)."""


class Record(Protocol):
    """What a batch needs of a Kafka message (kafka-python's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Msg:
    """A plain Record, for tests and replays from files."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass
class BatchResult:
    number: int
    messages: int
    landed: int
    quarantined: int
    ranges: dict[int, tuple[int, int]]  # partition -> (first, last)
    ds: dict[str, dict[str, int]]  # ds -> {"landed": n, "quarantined": n}
    reasons: Counter = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)  # lake-relative paths written
    drift: FieldDrift = field(default_factory=FieldDrift)  # the batch's events off the contract's fields


# land_batch fills the columns positionally: schema.FIELDS, then where the message came from
# (tests/unit/sources/kafka/test_events_landing.py checks the two stay in step).
_EVENT_COLUMNS = EVENT_SCHEMA.names


def default_group(topic: str) -> str:
    return f"tally-lake-{layout.dataset_name(topic)}"


# -- one micro-batch into the lake --------------------------------------------------------
def _merge_manifest(writer: PartitionWriter, topic: str, new: dict[str, dict], *,
                    new_ranges: list[layout.OffsetRange], schema: pa.Schema, key: str | None) -> Manifest:
    """Commit ``writer``'s ds with the committed manifest's entries, less those ``new_ranges``
    overlap, plus ``new`` (the files ``writer`` wrote); superseded files are swept."""
    committed = writer.lake.read_manifest(writer.dataset_path, writer.ds)
    old = (committed.get("entries") if committed is not None else None) or {}
    dropped = set(layout.superseded(list(old), [r.file_name for r in new_ranges]))
    entries = {name: entry for name, entry in old.items() if name not in dropped}
    entries.update(new)
    files = sorted(entries, key=layout.parse_file_name)
    by_partition: dict[str, dict[str, int]] = {}
    for name in files:
        rng = layout.parse_file_name(name)
        seen = by_partition.setdefault(str(rng.partition), {"first": rng.first, "last": rng.last})
        seen["first"], seen["last"] = min(seen["first"], rng.first), max(seen["last"], rng.last)
    manifest = Manifest(
        dataset=layout.ledger_dataset(topic),
        files=files,
        row_count=sum(entries[n]["rows"] for n in files),
        watermark={"kind": "kafka_offsets", "partitions": by_partition},
        mode="stream",
        schema_fingerprint=schema_fingerprint(schema),
        extra={"topic": topic, "entries": {n: entries[n] for n in files}, "ds_semantics": DS_SEMANTICS},
    )
    if key:
        manifest.key = key
        manifest.key_checksum = combine(entries[n]["key_checksum"] for n in files)
        manifest.source_count = sum(entries[n]["messages"] for n in files)
        manifest.extra["quarantined"] = sum(entries[n]["quarantined"] for n in files)
        manifest.extra["schema_drift"] = FieldDrift.merged(entries[n].get("schema_drift") for n in files).drift()
    return writer.commit(manifest)


def land_batch(lake: Lake, topic: str, records: Sequence[Record], number: int = 0) -> BatchResult:
    """Write one micro-batch and commit its ds manifests (not the Kafka offsets)."""
    raw_path = layout.dataset_path(topic, layout.RAW_ZONE)
    q_path = layout.dataset_path(topic, layout.QUARANTINE_ZONE)
    now = datetime.now(UTC)
    ranges: dict[int, tuple[int, int]] = {}
    for r in records:
        lo, hi = ranges.get(r.partition, (r.offset, r.offset))
        ranges[r.partition] = (min(lo, r.offset), max(hi, r.offset))
    now_ms = int(now.timestamp() * 1000)
    # (ds, partition) -> one list per EVENT_SCHEMA column / quarantine rows
    rows: dict[tuple[str, int], list[list]] = {}
    bad: dict[tuple[str, int], list[dict]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    drift: dict[tuple[str, int], FieldDrift] = defaultdict(FieldDrift)
    days: dict[int, str] = {}
    for r in records:
        ts = r.timestamp
        if ts is None or ts < 0:
            ts = now_ms
        day = ts // layout.DAY_MS
        ds = days.get(day) or days.setdefault(day, layout.ds_of(ts))
        row = parse_row(r.value)
        if type(row) is not tuple:  # quarantined, or valid with fields outside the contract
            if type(row) is str:
                reasons[row] += 1
                bad[(ds, r.partition)].append({
                    "topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": ts,
                    "key": raw_text(r.key), "raw_value": raw_text(r.value), "reason": row,
                })
                drift[(ds, r.partition)].quarantined(r.value, row)
                continue
            drift[(ds, r.partition)].extra(row.extra)
        cols = rows.get((ds, r.partition))
        if cols is None:
            cols = rows[(ds, r.partition)] = [[] for _ in _EVENT_COLUMNS]
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 = cols
        c0.append(row[0])
        c1.append(row[1])
        c2.append(row[2])
        c3.append(row[3])
        c4.append(row[4])
        c5.append(row[5])
        c6.append(r.topic)
        c7.append(r.partition)
        c8.append(r.offset)
        c9.append(ts)
    cells = sorted(set(rows) | set(bad))
    result = BatchResult(number, len(records), 0, 0, ranges, {})
    raw_entries: dict[str, dict[str, dict]] = defaultdict(dict)
    q_entries: dict[str, dict[str, dict]] = defaultdict(dict)
    ds_ranges: dict[str, list[layout.OffsetRange]] = defaultdict(list)
    writers: dict[tuple[str, str], PartitionWriter] = {}

    def writer(path: str, ds: str) -> PartitionWriter:
        if (path, ds) not in writers:
            writers[(path, ds)] = PartitionWriter(lake, path, ds)
        return writers[(path, ds)]

    for ds, p in cells:  # 1. data files (the manifests come after every file is written)
        first, last = ranges[p]
        rng = layout.OffsetRange(p, first, last)
        ds_ranges[ds].append(rng)
        cols, quarantined = rows.get((ds, p)) or [[] for _ in _EVENT_COLUMNS], bad.get((ds, p), [])
        good = cols[0]  # the keys (event_id), one per landed row
        key_checksum = checksum(good)
        table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols, EVENT_SCHEMA, strict=True)],
                                     schema=EVENT_SCHEMA)
        writer(raw_path, ds).write_file(rng.file_name, table)
        result.files.append(f"{Lake.partition(raw_path, ds)}/{rng.file_name}")
        raw_entries[ds][rng.file_name] = {
            "partition": p, "first_offset": first, "last_offset": last, "rows": len(good),
            "quarantined": len(quarantined), "messages": len(good) + len(quarantined),
            "key_checksum": key_checksum, "landed_at": now.isoformat(),
        }
        cell_drift = drift.get((ds, p))
        if cell_drift:
            raw_entries[ds][rng.file_name]["schema_drift"] = cell_drift.to_entry()
            result.drift = FieldDrift.merged([result.drift.to_entry(), cell_drift.to_entry()])
        if quarantined:
            writer(q_path, ds).write_file(rng.file_name, pa.Table.from_pylist(quarantined, schema=QUARANTINE_SCHEMA))
            result.files.append(f"{Lake.partition(q_path, ds)}/{rng.file_name}")
            q_entries[ds][rng.file_name] = {
                "partition": p, "first_offset": first, "last_offset": last, "rows": len(quarantined),
                "reasons": dict(Counter(q["reason"] for q in quarantined)), "landed_at": now.isoformat(),
            }
        counts = result.ds.setdefault(ds, {"landed": 0, "quarantined": 0})
        counts["landed"] += len(good)
        counts["quarantined"] += len(quarantined)
        result.landed += len(good)
        result.quarantined += len(quarantined)
    if result.landed + result.quarantined != result.messages:  # by construction; guards edits
        raise LandingError(f"batch {number}: {result.landed} landed + {result.quarantined} quarantined "
                           f"!= {result.messages} messages")
    for ds in sorted(ds_ranges):  # 2. commit markers: quarantine, then raw (the ds's marker)
        _merge_manifest(writer(q_path, ds), topic, q_entries.get(ds, {}), new_ranges=ds_ranges[ds],
                        schema=QUARANTINE_SCHEMA, key=None)
        _merge_manifest(writer(raw_path, ds), topic, raw_entries[ds], new_ranges=ds_ranges[ds],
                        schema=EVENT_SCHEMA, key=KEY)
    result.reasons = reasons
    return result


# -- the consumer ---------------------------------------------------------------------------
class _Revocations:
    """A rebalance listener that remembers whether partitions were taken away mid-run."""

    def __init__(self) -> None:
        self.revoked: set = set()

    def on_partitions_revoked(self, revoked) -> None:
        self.revoked |= set(revoked)

    def on_partitions_assigned(self, assigned) -> None:
        pass


def land_events(
    lake: Lake,
    bootstrap: str,
    topic: str = EVENTS_TOPIC,
    *,
    group_id: str | None = None,
    batch_size: int = 5_000,
    max_messages: int | None = None,
    max_poll_records: int = 500,
    session_timeout_ms: int = 6_000,
    poll_timeout_ms: int = 500,
    idle_polls: int = 2,
    join_timeout_s: float = 60.0,
    commit_timeout_ms: int = 15_000,
    before_commit: Callable[[BatchResult], None] | None = None,
) -> dict:
    """Consume ``topic`` as ``group_id`` and land it; returns the run's report (see module doc).

    tansu joins a group in about ``session_timeout_ms / 2`` and its ``end_offsets`` is wrong
    for batched data, so the run stops on ``idle_polls`` empty polls and measures lag from
    the high watermark of the fetch responses. ``before_commit(batch)`` runs after a batch is
    in the lake and before its offsets are committed (tests crash there).
    """
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    group_id = group_id or default_group(topic)
    listener = _Revocations()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            listener.on_partitions_revoked(revoked)

        def on_partitions_assigned(self, assigned):
            listener.on_partitions_assigned(assigned)

    started = time.monotonic()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, client_id=f"{group_id}-lander",
        enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 3), max_poll_records=max_poll_records,
        request_timeout_ms=max(30_000, session_timeout_ms + 5_000),
        allow_auto_create_topics=False,  # a typo must not create a topic
    )
    report: dict[str, Any] = {
        "topic": topic, "group": group_id, "started_at": datetime.now(UTC).isoformat(),
        "messages": 0, "landed": 0, "quarantined": 0, "batches": 0, "ds": {}, "reasons": {},
        "partitions": {},
    }
    reasons: Counter[str] = Counter()
    drift_seen = FieldDrift()
    buffer: list[Record] = []
    assigned: set = set()
    start_offsets: dict[int, int] = {}
    per_partition: dict[int, dict[str, int]] = {}

    # One batch is landed by a worker thread while the next one is fetched; its offsets are
    # committed (in order, from this thread: the consumer is not thread-safe) once it is in
    # the lake. kafka-python's decoding and the lake writes then overlap.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tally-land")
    pending: Future | None = None
    submitted = 0

    def settle() -> None:
        """Wait for the batch in flight; once it is in the lake, commit its offsets."""
        nonlocal pending, drift_seen
        if pending is None:
            return
        batch, pending = pending.result(), None  # the worker's error, if any, is raised here
        if before_commit is not None:
            before_commit(batch)
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(last + 1, "", -1)
                   for p, (_, last) in batch.ranges.items()}
        consumer.commit(offsets, timeout_ms=commit_timeout_ms)
        report["batches"] += 1
        report["messages"] += batch.messages
        report["landed"] += batch.landed
        report["quarantined"] += batch.quarantined
        reasons.update(batch.reasons)
        if batch.drift:
            drift_seen = FieldDrift.merged([drift_seen.to_entry(), batch.drift.to_entry()])
        for ds, counts in batch.ds.items():
            into = report["ds"].setdefault(ds, {"landed": 0, "quarantined": 0})
            into["landed"] += counts["landed"]
            into["quarantined"] += counts["quarantined"]
        for p, (first, last) in batch.ranges.items():
            per_partition.setdefault(p, {"first": first})["last"] = last
        log.info("batch %d: %d messages, %d landed, %d quarantined, offsets %s committed",
                 batch.number, batch.messages, batch.landed, batch.quarantined,
                 {p: f"{a}-{b}" for p, (a, b) in sorted(batch.ranges.items())})

    def flush() -> None:
        nonlocal buffer, pending, submitted
        if not buffer:
            return
        if listener.revoked:
            raise LandingError(f"partitions {sorted(tp.partition for tp in listener.revoked)} were revoked "
                               "by a rebalance: another consumer joined the group; nothing more committed")
        settle()  # at most one batch in flight, so commits stay in offset order
        submitted += 1
        pending = executor.submit(land_batch, lake, topic, buffer, submitted)
        buffer = []

    try:
        if not consumer.partitions_for_topic(topic):
            raise LandingError(f"topic {topic} does not exist on {bootstrap}")
        consumer.subscribe([topic], listener=Listener())
        idle = 0
        taken = 0
        while True:
            want = min(max_poll_records, batch_size - len(buffer))  # batches of exactly batch_size
            if max_messages is not None:
                want = min(want, max_messages - taken)
            polled = consumer.poll(timeout_ms=poll_timeout_ms, max_records=max(want, 1))
            if not assigned:
                assigned = set(consumer.assignment())
                if not assigned:
                    if time.monotonic() - started > join_timeout_s:
                        raise LandingError(f"group {group_id} got no partitions of {topic} "
                                           f"in {join_timeout_s:.0f}s")
                    continue
                report["join_seconds"] = round(time.monotonic() - started, 2)
                every = consumer.partitions_for_topic(topic) or set()
                if {tp.partition for tp in assigned} != every:
                    raise LandingError(
                        f"group {group_id} was assigned partitions {sorted(tp.partition for tp in assigned)} "
                        f"of {sorted(every)}: another consumer is in the group; landing is single-writer")
                committed = {tp: consumer.committed(tp) for tp in assigned}
                beginning = consumer.beginning_offsets(list(assigned))
                start_offsets = {tp.partition: (committed[tp] if committed[tp] is not None else beginning[tp])
                                 for tp in assigned}
            records = [r for tp in sorted(polled, key=lambda t: t.partition) for r in polled[tp]]
            if records:
                idle = 0
                buffer.extend(records)
                taken += len(records)
            else:
                idle += 1
            capped = max_messages is not None and taken >= max_messages
            if len(buffer) >= batch_size or (buffer and (idle or capped)):
                flush()
            if capped or idle >= idle_polls:
                break
        settle()
        _finish_report(report, consumer, assigned, start_offsets, per_partition, bootstrap)
    finally:
        executor.shutdown(wait=True)  # a batch still being written finishes, uncommitted
        consumer.close(autocommit=False)
    report["reasons"] = dict(sorted(reasons.items()))
    report["schema_drift"] = drift_seen.drift()  # this run's events; each ds's manifest has the ds's
    if drift_seen:
        log.warning("%s: events off the contract's fields (schema drift): %s", topic,
                    report["schema_drift"]["events"])
    report["seconds"] = round(time.monotonic() - started, 2)
    if report["messages"] != report["landed"] + report["quarantined"]:
        raise LandingError(f"{report['messages']} messages != {report['landed']} landed + "
                           f"{report['quarantined']} quarantined")
    log.info("landed %s: %d messages, %d landed, %d quarantined in %d batches; lag %s",
             topic, report["messages"], report["landed"], report["quarantined"], report["batches"],
             report.get("lag"))
    return report


def _finish_report(report: dict, consumer, assigned: set, start: dict[int, int],
                   landed: dict[int, dict[str, int]], bootstrap: str) -> None:
    """Per partition: where the run started and ended, the high watermark and the lag left."""
    from tally.sources.kafka.probe import highwaters

    total_lag: int | None = 0
    total_before: int | None = 0
    # From the fetch responses (end_offsets is wrong on tansu); a partition whose fetched
    # records were not handed out yet (a capped run) has none, so probe those.
    highs = {tp.partition: consumer.highwater(tp) for tp in assigned}
    if any(h is None for h in highs.values()):
        probed = highwaters(bootstrap, report["topic"])
        highs = {p: h if h is not None else probed.get(p, (0, None))[1] for p, h in highs.items()}
    for tp in sorted(assigned, key=lambda t: t.partition):
        position = consumer.position(tp)
        high = highs[tp.partition]
        lag = None if high is None else max(high - position, 0)
        before = None if high is None else max(high - start[tp.partition], 0)
        entry = {"start_offset": start[tp.partition], "end_offset": position, "highwater": high, "lag": lag,
                 "lag_before": before}
        if tp.partition in landed:
            entry["landed_offsets"] = [landed[tp.partition]["first"], landed[tp.partition]["last"]]
        report["partitions"][str(tp.partition)] = entry
        total_lag = None if lag is None or total_lag is None else total_lag + lag
        total_before = None if before is None or total_before is None else total_before + before
    report["lag"] = total_lag
    report["lag_before"] = total_before
