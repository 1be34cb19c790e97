"""Verifying readers: what a reader of a committed partition got is what the commit recorded.

The commit (``tally.lake.writer.PartitionWriter.commit``) records, per partition, the rows in
each file's Parquet footer (``Manifest.file_rows``), the total ``row_count`` and the
``key_checksum`` of the ``key`` column. Every reader checks what it reads against that record
and fails at *its* hop, naming the partition (zone, dataset, ds) and the difference:

- **footers** (``footer_problems``, cheap: one footer per listed file, no data): every listed
  file is there and holds the rows the commit recorded, and the files add up to ``row_count``;
- **key checksum** (``KeyCheck``): the key column of the rows read, summed while they stream
  (``tally.lake.checksum.KeyChecksum``), equals ``key_checksum``; compared after the last batch,
  before the reader hands over its result.

``Lake.read_table``, ``Lake.iter_batches`` and ``Lake.verify`` do both (the loader, the gates and
reconciliation read through them); Spark readers check the footers before reading and the
count and checksum per partition in one aggregate after (``verify_spark``, the Spark form).

A manifest written before ``file_rows`` existed skips the per-file check (the total and the
checksum are still checked); one without ``key`` or ``key_checksum`` skips the checksum.
NULL keys: the Arrow writers hash them as the text ``None``, Spark and SQL skip them; a reader
accepts either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from tally.core.errors import DataProblem
from tally.lake.checksum import KeyChecksum, key_hash, to_hex
from tally.lake.manifest import Manifest

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from tally.lake.store import Lake


class PartitionMismatch(DataProblem):
    """A committed partition's files are not what its commit record says."""

    def __init__(self, partition: str, problems: list[str], files: Iterable[str] = ()) -> None:
        self.partition, self.problems, self.files = partition, list(problems), list(files)
        super().__init__(f"{partition}: {'; '.join(self.problems)} (the files changed after the commit: "
                         "re-run the step that wrote this partition)")


def partition_name(dataset_path: str, ds: str) -> str:
    """``raw.erp.sales_orders ds=2026-12-01``: zone, dataset and ds of a partition."""
    return f"{dataset_path.strip('/').replace('/', '.')} ds={ds}"


def _file_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def footer_rows(lake: Lake, path: str) -> int:
    """The rows in a Parquet file's footer (reads the footer only)."""
    return pq.read_metadata(path, filesystem=lake.fs).num_rows


def footer_problems(lake: Lake, dataset_path: str, ds: str, manifest: Manifest) -> tuple[list[str], list[str]]:
    """What is wrong with the listed files' footers, and the names of the files concerned."""
    folder = lake.path(lake.partition(dataset_path, ds))
    recorded = manifest.file_rows or {}
    problems: list[str] = []
    bad: list[str] = []
    total = 0
    for name in manifest.files:
        try:
            found = footer_rows(lake, f"{folder}/{name}")
        except FileNotFoundError:
            problems.append(f"{name} is gone")
            bad.append(name)
            continue
        except (OSError, pa.ArrowInvalid) as exc:
            problems.append(f"{name} is not readable Parquet ({exc})")
            bad.append(name)
            continue
        total += found
        expected = recorded.get(name)
        if expected is not None and found != expected:
            problems.append(f"{name} holds {found} rows, the commit record says {expected}")
            bad.append(name)
    if not problems and manifest.row_count is not None and total != manifest.row_count:
        problems.append(f"the files hold {total} rows, the commit record says {manifest.row_count}")
    return problems, bad


def check_footers(lake: Lake, dataset_path: str, ds: str, manifest: Manifest) -> None:
    """Raise ``PartitionMismatch`` when ``footer_problems`` finds any."""
    problems, bad = footer_problems(lake, dataset_path, ds, manifest)
    if problems:
        raise PartitionMismatch(partition_name(dataset_path, ds), problems, bad)


def checksum_matches(expected: str, total: int, nulls: int) -> bool:
    """Whether ``expected`` is the checksum of keys whose non-null hashes sum to ``total`` plus
    ``nulls`` NULL keys (skipped, or hashed as the text ``None``: see the module)."""
    return expected in (to_hex(total), to_hex(total + nulls * key_hash(None)))


class KeyCheck:
    """Count and key-checksum a partition's rows as they are read; ``finish`` compares them with
    the commit record. ``active`` is False when the manifest records no key checksum."""

    def __init__(self, dataset_path: str, ds: str, manifest: Manifest) -> None:
        self.partition = partition_name(dataset_path, ds)
        self.manifest = manifest
        self.key = manifest.key if manifest.key and manifest.key_checksum else None
        self.rows = 0
        self.nulls = 0
        self.acc = KeyChecksum()

    @property
    def active(self) -> bool:
        return self.key is not None

    def update(self, data: pa.RecordBatch | pa.Table) -> None:
        self.rows += data.num_rows
        if self.key is None:
            return
        if self.key not in data.schema.names:
            raise PartitionMismatch(self.partition, [f"the key column {self.key!r} the commit record names is not "
                                                     "in the files"])
        keys = data.column(self.key)
        self.nulls += keys.null_count
        self.acc.update_arrow(keys.drop_null() if keys.null_count else keys)

    def finish(self) -> None:
        problems = []
        expected_rows = self.manifest.row_count
        if expected_rows is not None and self.rows != expected_rows:
            problems.append(f"read {self.rows} rows, the commit record says {expected_rows}")
        if self.key is not None and not checksum_matches(self.manifest.key_checksum, self.acc.total, self.nulls):
            problems.append(f"key checksum of {self.key} {self.acc.hexdigest()}, the commit record says "
                            f"{self.manifest.key_checksum}")
        if problems:
            raise PartitionMismatch(self.partition, problems)


# -- the Spark form -------------------------------------------------------------------------
def verify_spark(frame: DataFrame, part: Column, key: str | None, dataset_path: str,
                   manifests: Mapping[str, Manifest]) -> None:
    """Count and key-checksum ``frame`` per committed ds in one Spark aggregate and compare each
    ds with its manifest; raise one ``PartitionMismatch`` naming the first ds that differs.

    ``frame`` holds the rows Spark read from the ``manifests``' files (several ds of one
    dataset), ``part`` is each row's ds (e.g. from ``_metadata.file_path``), ``key`` the key
    column (a manifest's own ``key`` wins; without either, only the counts are compared)."""
    from pyspark.sql import functions as F

    from tally.lake.checksum import checksum_col

    key = next((m.key for m in manifests.values() if m.key), None) or key
    checked = key is not None and any(m.key_checksum for m in manifests.values())
    aggs = [F.count(F.lit(1)).alias("n")]
    if checked:
        aggs += [checksum_col(key).alias("c"), F.count(F.col(key)).alias("k")]
    found = {row["_part"]: row for row in frame.groupBy(part.alias("_part")).agg(*aggs).collect()}
    for ds in sorted(manifests):
        manifest, row = manifests[ds], found.get(ds)
        rows = int(row["n"]) if row is not None else 0
        problems = []
        if manifest.row_count is not None and rows != manifest.row_count:
            problems.append(f"Spark read {rows} rows, the commit record says {manifest.row_count}")
        if checked and manifest.key_checksum:
            total = int(row["c"], 16) if row is not None else 0
            nulls = rows - (int(row["k"]) if row is not None else 0)
            if not checksum_matches(manifest.key_checksum, total, nulls):
                problems.append(f"key checksum of {key} {to_hex(total)}, the commit record says "
                                f"{manifest.key_checksum}")
        if problems:
            raise PartitionMismatch(partition_name(dataset_path, ds), problems)
