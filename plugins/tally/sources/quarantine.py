"""The quarantine zone of an interval source: rows read but not landed, each with a reason.

``quarantine/<source>/<object>/ds=<ds>/`` holds, for one ds, the rows of the source's window
that cannot land in the raw zone, as the source's text plus a ``reason``. Each is counted:
the raw manifest records ``quarantined`` (and ``quarantine``: the path, files and reasons), so
``source_count = row_count + quarantined - tombstones`` holds for every ds, and the raw gate
checks it (``tally.stages.extract.expected_raw_rows``).

What is quarantined, at every interval source (ERP, Salesforce):

* a value that cannot be typed, or a null in a required field (the ERP's ``convert``);
* a row whose cursor (``updated_at``, ``SystemModstamp``) is **in the future**: later than
  the extraction's clock plus ``TALLY_FUTURE_SKEW_SECONDS`` (default 300). Such a row is in no
  interval that has ended, so no run would ever read it: each run reads it with its window
  (``... OR cursor > <cutoff>``) and sets it aside with the reason ``<cursor> in the future``
  until the source is fixed, when it lands in the ds its new cursor falls in.

The quarantine partition is committed before the raw one (whose manifest names its files);
the files of a previous quarantine version go once the raw version is committed
(:meth:`Quarantine.settle`), and a re-run that quarantines nothing removes the partition.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from tally.catalog import Dataset, Field
from tally.lake import Lake, Manifest, PartitionWriter, PushWriter, schema_fingerprint
from tally.lake.writer import remove_partition, sweep

REASON = "reason"
FUTURE_SKEW = timedelta(minutes=5)


def quarantine_path(dataset: Dataset) -> str:
    return f"quarantine/{dataset.source}/{dataset.name}"


def quarantine_schema(fields: tuple[Field, ...]) -> pa.Schema:
    """Every field as text, plus ``reason``."""
    if any(f.name == REASON for f in fields):
        raise ValueError(f"a source field is named {REASON!r}, the quarantine's own column")
    return pa.schema([*(pa.field(f.name, pa.string()) for f in fields), pa.field(REASON, pa.string(), False)])


def future_skew_from_env(env: dict[str, str] | None = None) -> timedelta:
    env = dict(os.environ if env is None else env)
    return timedelta(seconds=int(env.get("TALLY_FUTURE_SKEW_SECONDS", str(int(FUTURE_SKEW.total_seconds())))))


def future_cutoff(skew: timedelta = FUTURE_SKEW, now: datetime | None = None) -> datetime:
    """A cursor later than this is in the future: the extraction's clock plus ``skew``."""
    return (now or datetime.now(UTC)) + skew


def future_reason(cursor: str) -> str:
    return f"{cursor} in the future"


class Quarantine:
    """One ds's quarantine partition of ``dataset``, opened by the first row set aside."""

    def __init__(self, lake: Lake, dataset: Dataset, ds: str, attempt: str, schema: pa.Schema) -> None:
        self.lake, self.dataset, self.ds, self.attempt, self.schema = lake, dataset, ds, attempt, schema
        self.path = quarantine_path(dataset)
        self.writer: PushWriter | None = None
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.files: list[str] = []

    def push(self, batch: pa.RecordBatch) -> None:
        if self.writer is None:
            self.writer = PushWriter(PartitionWriter(self.lake, self.path, self.ds, self.attempt), self.schema)
        self.writer.push(batch)
        self.count += batch.num_rows
        self.reasons.update(batch.column(REASON).to_pylist())

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def commit(self) -> list[str]:
        """Commit the rows set aside (before the raw partition); the previous version's files
        stay until :meth:`settle`: the raw version still committed names them."""
        if self.writer is None:
            return []
        self.writer.close()
        self.files = list(self.writer.files)
        self.writer.partition.commit(Manifest(
            dataset=self.dataset.dataset_id, files=self.files, row_count=self.count,
            schema_fingerprint=schema_fingerprint(self.schema),
            extra={"reasons": dict(self.reasons), "raw_attempt": self.attempt},
        ), sweep_now=False)
        return self.files

    def settle(self) -> None:
        """Once the raw version is committed: drop the quarantine files it no longer names (the
        whole quarantine partition, on a re-run that found nothing to set aside)."""
        if self.files:
            sweep(self.lake, self.path, self.ds, keep=self.files)
        else:
            remove_partition(self.lake, self.path, self.ds)

    def manifest_values(self) -> dict:
        """What the raw manifest records of the quarantine."""
        return {"quarantined": self.count,
                "quarantine": {"path": self.lake.partition(self.path, self.ds), "files": list(self.files),
                               "reasons": dict(self.reasons)}}
