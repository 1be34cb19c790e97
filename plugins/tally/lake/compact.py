"""Compaction of the raw zone: a committed ds whose rows sit in many small files is rewritten
into as few files as possible, the same rows, committed like any new version of the ds.

Why: the raw zone is kept forever (it is the only history: ``tally.lake.retention``), so the
number of files it holds must not grow with every micro-batch or re-run. Readers (Spark, the
gates, the loader) pay per file: a footer read, a request on S3.

**Policy** (``CompactionPolicy``): a ds is compacted when it has more than ``max_files`` files,
or at least two files under ``small_bytes`` that could be merged, and only when the rewrite
has fewer files than now (``ceil(rows / target_rows)``). Only ds at least ``older_than_days``
days old (never today's ds, which is still being written; nor yesterday's by default).

**Exactness**: the rows are read through ``Lake.iter_batches(verify=True)`` (footers, row count
and key checksum checked against the commit record: a ds that does not match it raises
``PartitionMismatch`` and is never rewritten), written in the same order with the same schema by
``PartitionWriter`` (``target_rows`` per file), counted and key-checksummed again while written,
and committed only if both equal the old manifest's. The new manifest carries every other value
of the old one over (source count, watermark, mode, tombstones, quarantine, heals…), with
``file_rows`` recomputed and ``compacted: {at, files_before, files_after}``.

**Identity**: the new manifest records ``content_id`` (the old ``commit_id``) and
``content_of`` (what it vouches for), so ``commit_id`` is unchanged and every state that
consumed the ds stays valid (``tally.lake.manifest.commit_id``, ``tally.lake.state``).

**Kafka is not compacted**: its files are named by offset range and its manifest's ``entries``
map each name to its counts; the landing re-reads those entries and drops any file a replayed
range overlaps (``tally.sources.kafka.layout.superseded``). A merged file would either break
the entries (the next landing lists files that no longer exist) or make a replay of part of
its range drop the other offsets it holds. See docs/lake.md.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tally.lake.checksum import KeyChecksum
from tally.lake.manifest import Manifest, commit_id, content_record
from tally.lake.store import Lake
from tally.lake.verify import PartitionMismatch, partition_name
from tally.lake.writer import PartitionWriter

RAW_ZONE = "raw"
MIB = 2**20
KAFKA_EXCLUDED = ("Kafka partitions are not compacted: the landing names files by offset range and a replay "
                  "drops every file its range overlaps, so a merged file would lose offsets (docs/lake.md)")


@dataclass(frozen=True)
class CompactionPolicy:
    """When a raw ds is compacted, and into what (see the module)."""

    max_files: int = 8
    small_bytes: int = 32 * MIB
    target_rows: int = 1_000_000
    older_than_days: int = 2

    def __post_init__(self) -> None:
        if self.max_files < 1 or self.small_bytes < 0 or self.target_rows < 1 or self.older_than_days < 1:
            raise ValueError(f"bad compaction policy {self}: max_files, target_rows and older_than_days must be "
                             ">= 1, small_bytes >= 0")

    def cutoff(self, today: date) -> str:
        """The newest ds that may be compacted."""
        return (today - timedelta(days=self.older_than_days)).isoformat()


@dataclass
class Compaction:
    """One ds: what it holds and what compaction does (``action``: compact, compacted, skip,
    refused) and why."""

    dataset: str  # the lake path, raw/<source>/<object>
    ds: str
    files_before: int
    rows: int
    bytes_before: int
    small_files: int
    files_after: int
    action: str
    reason: str = ""

    @property
    def dataset_id(self) -> str:
        return dataset_id(self.dataset)

    def to_dict(self) -> dict:
        return {**asdict(self), "dataset": self.dataset_id}


def dataset_id(dataset_path: str) -> str:
    """``raw/salesforce/Opportunity`` → ``salesforce.Opportunity``."""
    return ".".join(dataset_path.split("/")[1:])


def raw_datasets(lake: Lake) -> list[str]:
    """Every raw dataset path in the lake (``raw/<source>/<object>``), sorted."""
    return sorted(f"{RAW_ZONE}/{source}/{name}" for source in _dirs(lake, RAW_ZONE)
                  for name in _dirs(lake, f"{RAW_ZONE}/{source}"))


def _dirs(lake: Lake, path: str) -> list[str]:
    base = lake.path(path)
    if not lake.exists(base):
        return []
    return [i.base_name for i in lake.fs.get_file_info(pafs.FileSelector(base, recursive=False))
            if i.type == pafs.FileType.Directory and not i.base_name.startswith(("_", "."))]


def excluded(dataset_path: str) -> str | None:
    """Why a dataset is never compacted, or None."""
    return KAFKA_EXCLUDED if dataset_path.startswith(f"{RAW_ZONE}/kafka/") else None


def assess(lake: Lake, dataset_path: str, ds: str, manifest: Manifest, policy: CompactionPolicy) -> Compaction:
    """What compaction would do with the committed ds (reads the file sizes, no data)."""
    folder = lake.path(Lake.partition(dataset_path, ds))
    infos = lake.fs.get_file_info([f"{folder}/{f}" for f in manifest.files])
    sizes = [i.size or 0 for i in infos]
    rows = int(manifest.row_count or 0)
    n = len(manifest.files)
    small = sum(1 for s in sizes if s < policy.small_bytes)
    after = max(1, math.ceil(rows / policy.target_rows))
    found = Compaction(dataset_path, ds, n, rows, sum(sizes), small, n, "skip")
    reason = excluded(dataset_path)
    if reason is None and (manifest.row_count is None or not manifest.key or not manifest.key_checksum):
        reason = "its manifest records no row count or key checksum to verify a rewrite against"
    if reason is None and not (n > policy.max_files or small >= 2):
        reason = f"{n} file(s), {small} under {policy.small_bytes // MIB} MiB: within the policy"
    if reason is None and after >= n:
        reason = f"{n} file(s) are already the fewest for {rows} rows at {policy.target_rows} rows per file"
    if reason is not None:
        found.reason = reason
        return found
    found.action, found.files_after = "compact", after
    found.reason = f"{n} files ({small} small) into {after}"
    return found


def plan(lake: Lake, policy: CompactionPolicy | None = None, today: date | None = None, *,
         datasets: Iterable[str] | None = None, ds: str | None = None) -> list[Compaction]:
    """Every committed raw ds of ``datasets`` (lake paths; default: all) up to the policy's cutoff
    (or exactly ``ds``), assessed: pure, nothing is written."""
    policy = policy or CompactionPolicy()
    cutoff = policy.cutoff(today or datetime.now(UTC).date())
    out = []
    for path in datasets if datasets is not None else raw_datasets(lake):
        for part in lake.committed(path, up_to=cutoff):
            if ds is not None and part != ds:
                continue
            manifest = lake.read_manifest(path, part)
            if manifest is not None:
                out.append(assess(lake, path, part, manifest, policy))
    return out


def compact(lake: Lake, dataset_path: str, ds: str, policy: CompactionPolicy | None = None, *,
            now: datetime | None = None) -> Compaction:
    """Rewrite the committed ds into fewer files when the policy says so (see the module);
    returns what was done. ``PartitionMismatch`` when its files do not match its commit record
    (nothing is committed, the ds is left as it was)."""
    policy = policy or CompactionPolicy()
    old = lake.committed_manifest(dataset_path, ds)
    found = assess(lake, dataset_path, ds, old, policy)
    if found.action != "compact":
        return found
    folder = lake.path(Lake.partition(dataset_path, ds))
    schema = pq.read_schema(f"{folder}/{old.files[0]}", filesystem=lake.fs)
    for name in old.files[1:]:
        if not pq.read_schema(f"{folder}/{name}", filesystem=lake.fs).equals(schema, check_metadata=False):
            found.action, found.files_after = "skip", found.files_before
            found.reason = f"its files do not all have the same schema ({name} differs from {old.files[0]})"
            return found

    writer = PartitionWriter(lake, dataset_path, ds)
    written = KeyChecksum()
    nulls = 0

    def measured(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Count and checksum the rows as they are written; cut batches at every multiple of
        ``target_rows`` so that the writer's roll-over makes files of exactly that many rows."""
        nonlocal nulls
        emitted = 0
        for batch in batches:
            keys = batch.column(old.key)
            nulls += keys.null_count
            written.update_arrow(keys.drop_null() if keys.null_count else keys)
            while batch.num_rows:
                room = policy.target_rows - emitted % policy.target_rows
                piece, batch = batch.slice(0, room), batch.slice(room)
                emitted += piece.num_rows
                yield piece

    try:
        # iter_batches raises PartitionMismatch after the last batch if the rows are not the commit's
        writer.write(schema, measured(lake.iter_batches(dataset_path, ds, verify=True)),
                     rows_per_file=policy.target_rows)
        _check_written(dataset_path, ds, old, written, nulls)
        current = lake.read_manifest(dataset_path, ds)
        if current is None or commit_id(current) != commit_id(old) or current.committed_at != old.committed_at:
            raise RuntimeError(f"{partition_name(dataset_path, ds)} was re-committed while compacting; nothing "
                               "was changed: run the compaction again")
        files = list(writer.files)
        new = old.updated(
            files=files, file_rows=None,
            content_id=commit_id(old),
            content_of=content_record({"files": files, "row_count": old.row_count, "key_checksum": old.key_checksum}),
            compacted={"at": (now or datetime.now(UTC)).isoformat(), "files_before": len(old.files),
                       "files_after": len(files)},
        )
        writer.commit(new)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.abort()
        raise
    found.action, found.files_after = "compacted", len(files)
    found.reason = f"{found.files_before} files ({found.small_files} small) into {len(files)}"
    return found


def _check_written(dataset_path: str, ds: str, old: Manifest, written: KeyChecksum, nulls: int) -> None:
    """The rows written are the commit's: their count and key checksum (NULL keys hashed as
    the writers of the commit did: ``tally.lake.verify.checksum_matches``)."""
    from tally.lake.verify import checksum_matches

    problems = []
    if written.count + nulls != old.row_count:
        problems.append(f"wrote {written.count + nulls} rows, the commit record says {old.row_count}")
    if not checksum_matches(old.key_checksum, written.total, nulls):
        problems.append(f"key checksum of the rows written {written.hexdigest()}, the commit record says "
                        f"{old.key_checksum}")
    if problems:
        raise PartitionMismatch(partition_name(dataset_path, ds), problems)


def run(lake: Lake, policy: CompactionPolicy | None = None, today: date | None = None, *,
        datasets: Iterable[str] | None = None, ds: str | None = None, dry_run: bool = False) -> list[Compaction]:
    """``plan``, then (unless ``dry_run``) ``compact`` every ds it marks; a ds that does not match
    its commit record is reported as ``refused`` (with the mismatch) and the others still run."""
    policy = policy or CompactionPolicy()
    planned = plan(lake, policy, today, datasets=datasets, ds=ds)
    if dry_run:
        return planned
    out = []
    for item in planned:
        if item.action != "compact":
            out.append(item)
            continue
        try:
            out.append(compact(lake, item.dataset, item.ds, policy))
        except (PartitionMismatch, RuntimeError) as exc:
            item.action, item.files_after, item.reason = "refused", item.files_before, str(exc)
            out.append(item)
    return out
