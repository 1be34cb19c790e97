"""Read-only looks at a topic: high watermarks, found by fetching.

tansu answers ``ListOffsets`` (kafka-python's ``end_offsets``) with a wrong offset once data
arrives in batches, but the high watermark in a fetch response is right, so these probes
fetch (one record at most) instead of asking for offsets.
"""

from __future__ import annotations

import time


def highwaters(bootstrap: str, topic: str, timeout_s: float = 5.0) -> dict[int, tuple[int, int]]:
    """``{partition: (earliest offset, high watermark)}`` of ``topic`` (empty if it does not exist)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="tally-probe", fetch_max_wait_ms=50, max_partition_fetch_bytes=1024)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return {}
        consumer.assign(parts)
        consumer.seek_to_beginning()
        earliest = {tp: consumer.position(tp) for tp in parts}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # Records of a partition are parsed (and its high watermark read) only once they
            # are handed out, so keep polling, one record at a time, without moving on.
            consumer.poll(timeout_ms=100, max_records=1, update_offsets=False)
            highs = {tp: consumer.highwater(tp) for tp in parts}
            if all(h is not None for h in highs.values()):
                return {tp.partition: (earliest[tp], highs[tp]) for tp in parts}
        raise TimeoutError(f"no high watermark for every partition of {topic} within {timeout_s}s")
    finally:
        consumer.close(autocommit=False)
