"""Where a Kafka micro-batch lands in the lake, and what a stream's ds means.

**ds of a message** = the UTC date of its Kafka record timestamp (the time the producer
appended it to the log), not of the event's ``occurred_at`` and not the landing date. The
record timestamp is stored with the message, so a replay of the same offsets always lands
each message in the same ds, whenever it runs; a late event (``occurred_at`` yesterday,
appended today) lands in today's ds, exactly like a Salesforce row lands in the ds of its
``SystemModstamp``. ``occurred_at`` stays a column for analysts.

**File names** derive from the batch's offset range per partition:
``<zone>/kafka/<name>/ds=<ds>/p<partition>-o<first>-<last>.parquet``, where first/last are
the first and last offsets of that partition in the batch (a batch whose messages span two
days writes one file per ds with the same name; each holds only its own day's rows). A
replay of the same batch writes the same name and overwrites it. A replay whose batch
boundaries differ (another batch size) writes a file whose range overlaps the old one; the
old file is dropped from the manifest in the same commit, because (partition, offset) →
message is immutable and every offset in the old range is being re-landed from Kafka.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

RAW_ZONE = "raw"
QUARANTINE_ZONE = "quarantine"
_FILE = re.compile(r"^p(\d+)-o(\d+)-(\d+)\.parquet$")


def dataset_name(topic: str) -> str:
    """``tally.activity`` → ``activity``: the last dot-separated part of the topic."""
    return topic.rsplit(".", 1)[-1]


def dataset_path(topic: str, zone: str = RAW_ZONE) -> str:
    """``raw/kafka/activity`` (or ``quarantine/kafka/activity``)."""
    return f"{zone}/kafka/{dataset_name(topic)}"


def ledger_dataset(topic: str) -> str:
    """The dataset name in ``ops.ledger``: ``kafka.activity``."""
    return f"kafka.{dataset_name(topic)}"


DAY_MS = 86_400_000


@lru_cache(maxsize=4096)
def _day(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86_400, tz=UTC).strftime("%Y-%m-%d")


def ds_of(timestamp_ms: int | None, fallback: datetime | None = None) -> str:
    """The ds of a record: the UTC date of its Kafka timestamp (``fallback`` when it has none)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return (fallback or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
    return _day(timestamp_ms // DAY_MS)


@dataclass(frozen=True, order=True)
class OffsetRange:
    partition: int
    first: int
    last: int

    @property
    def file_name(self) -> str:
        return f"p{self.partition}-o{self.first}-{self.last}.parquet"

    def overlaps(self, other: OffsetRange) -> bool:
        return self.partition == other.partition and self.first <= other.last and other.first <= self.last


def file_name(partition: int, first: int, last: int) -> str:
    if not 0 <= first <= last or partition < 0:
        raise ValueError(f"bad offset range p{partition} {first}..{last}")
    return OffsetRange(partition, first, last).file_name


def parse_file_name(name: str) -> OffsetRange:
    match = _FILE.match(name)
    if not match:
        raise ValueError(f"not a Kafka batch file name: {name!r}")
    p, first, last = (int(g) for g in match.groups())
    return OffsetRange(p, first, last)


def superseded(existing: list[str], new: list[str]) -> list[str]:
    """Files of ``existing`` that a commit of ``new`` replaces (same name or overlapping range)."""
    new_ranges = [parse_file_name(n) for n in new]
    out = []
    for name in existing:
        old = parse_file_name(name)
        if any(old.overlaps(r) for r in new_ranges):
            out.append(name)
    return out
