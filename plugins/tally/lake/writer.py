"""The one way a ds partition is (re)written, in every zone (raw Salesforce, raw ERP and its
quarantine, raw Kafka and its quarantine, curated from Spark):

1. **files**: the new version's files are written under names no committed manifest lists
   (``part-<attempt>-NNNNN.parquet``, a fresh attempt token per write), or, for a file whose
   name is its content (a Kafka offset range), written aside and renamed into place;
2. **manifest**: ``_manifest.json`` is replaced in one atomic write (``Lake.write_manifest``)
   listing exactly the files of the new version, with each file's footer row count
   (``file_rows``, which every reader checks: ``tally.lake.verify``): this is the commit;
3. **sweep**: only then are the files the manifest does not list removed.

A crash before 2 leaves the previous version committed and whole (its files are untouched;
the new attempt's files are litter the next commit sweeps), a crash after 2 leaves the new
one. A rewrite never removes the committed version first.

``PartitionWriter`` writes one new version; ``PushWriter`` feeds it one batch at a time (a
side output such as quarantine); ``PartitionWriter.stage_dir`` / ``adopt_staged`` commit
files another engine (Spark) wrote; ``land`` writes and commits a whole raw dataset
partition, measuring its row count and key checksum while writing.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tally.catalog import Dataset
from tally.lake.checksum import KeyChecksum
from tally.lake.manifest import MANIFEST, Manifest
from tally.lake.schema import arrow_schema, schema_fingerprint
from tally.lake.store import Lake, new_attempt
from tally.lake.verify import footer_rows, partition_name

STAGE_PREFIX = "_attempt-"  # a folder inside the ds where another engine writes its files


class PartitionWriter:
    """One new version of ``dataset_path``'s ds partition: write files, then ``commit``."""

    def __init__(self, lake: Lake, dataset_path: str, ds: str, attempt: str | None = None) -> None:
        self.lake, self.dataset_path, self.ds = lake, dataset_path, ds
        self.attempt = attempt or new_attempt()
        self.folder = lake.path(Lake.partition(dataset_path, ds))
        self.files: list[str] = []  # written (or adopted) by this attempt, in order
        self._next = 0

    def _note(self, name: str) -> None:
        if name not in self.files:
            self.files.append(name)

    def _new_name(self) -> str:
        name = f"part-{self.attempt}-{self._next:05d}.parquet"
        self._next += 1
        return name

    # -- 1. files ------------------------------------------------------------------------
    def write_batches(self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
                      rows_per_file: int = 1_000_000, writer_options: dict | None = None
                      ) -> Iterator[pa.RecordBatch]:
        """Write record batches into new part files, yielding each batch once it is written.

        Memory stays bounded by one batch; files roll over every ``rows_per_file`` rows. No
        batch at all still lands one empty, typed file. ``writer_options`` go to
        ``pyarrow.parquet.ParquetWriter`` (e.g. ``use_dictionary`` for only some columns).
        """
        self.lake.fs.create_dir(self.folder, recursive=True)
        writer: pq.ParquetWriter | None = None
        rows_in_file = 0
        try:
            for batch in batches:
                if writer is None or rows_in_file >= rows_per_file:
                    if writer is not None:
                        writer.close()
                    name = self._new_name()
                    writer = pq.ParquetWriter(f"{self.folder}/{name}", schema, filesystem=self.lake.fs,
                                              **(writer_options or {}))
                    self._note(name)
                    rows_in_file = 0
                writer.write_batch(batch)
                rows_in_file += batch.num_rows
                yield batch
            if writer is None:  # an empty interval still lands an empty, typed file
                name = self._new_name()
                pq.write_table(schema.empty_table(), f"{self.folder}/{name}", filesystem=self.lake.fs)
                self._note(name)
                yield pa.RecordBatch.from_pylist([], schema=schema)
        finally:
            if writer is not None:
                writer.close()

    def write(self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], **options) -> list[str]:
        """``write_batches`` to the end; returns every file this attempt has written so far."""
        for _ in self.write_batches(schema, batches, **options):
            pass
        return list(self.files)

    def write_file(self, name: str, table: pa.Table) -> None:
        """Write ``table`` as the file ``name``, so a reader never sees it half-written (a
        replay may rewrite a file a committed manifest lists, with the same content): S3 PUTs
        are atomic; on a local disk, write aside and rename."""
        self.lake.fs.create_dir(self.folder, recursive=True)
        target = f"{self.folder}/{name}"
        if self.lake.is_local:
            tmp = f"{self.folder}/.tmp-{name}"
            pq.write_table(table, tmp, filesystem=self.lake.fs)
            self.lake.fs.move(tmp, target)
        else:
            pq.write_table(table, target, filesystem=self.lake.fs)
        self._note(name)

    def stage_dir(self) -> str:
        """A folder inside the ds (lake-relative) for another engine (Spark) to write this
        attempt's files into; ``adopt_staged`` then takes them into the new version."""
        return f"{Lake.partition(self.dataset_path, self.ds)}/{STAGE_PREFIX}{self.attempt}"

    def adopt_staged(self) -> list[str]:
        """Move the parquet files written into ``stage_dir`` into the ds under this attempt's
        names (the engine's side files stay behind, for the sweep); returns the new names."""
        stage = self.lake.path(self.stage_dir())
        found = sorted(info.base_name for info in self.lake.fs.get_file_info(pafs.FileSelector(stage))
                       if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
                       and info.base_name[0] not in "._")
        names = []
        for found_name in found:
            name = self._new_name()
            self.lake.fs.move(f"{stage}/{found_name}", f"{self.folder}/{name}")
            self._note(name)
            names.append(name)
        return names

    # -- 2. manifest, 3. sweep -----------------------------------------------------------
    def commit(self, manifest: Manifest, *, sweep_now: bool = True) -> Manifest:
        """Make the files ``manifest.files`` lists the ds (one write), then sweep the rest.
        Every file this attempt wrote must be listed. ``sweep_now=False`` leaves the previous
        version's files for a later ``sweep`` (a side output whose old files another manifest
        still names until that one is committed too)."""
        unlisted = [f for f in self.files if f not in set(manifest.files)]
        if unlisted:
            raise ValueError(f"{self.dataset_path} ds={self.ds}: the manifest leaves out files this attempt "
                             f"wrote: {unlisted[:5]}")
        self.lake.fs.create_dir(self.folder, recursive=True)
        written = self.lake.write_manifest(self.dataset_path, self.ds, self._recorded(manifest))
        if sweep_now:
            sweep(self.lake, self.dataset_path, self.ds, keep=written.files)
        return written

    def _recorded(self, manifest: Manifest) -> Manifest:
        """``manifest`` with ``file_rows``, the commit record every reader checks its reads
        against (``tally.lake.verify``): the footer row count of each file this attempt wrote
        (or adopted); for a file the committed version already lists (a Kafka ds keeps its
        other offset ranges, a heal its untouched files), the count recorded then. The files
        must add up to the manifest's ``row_count``."""
        previous = self.lake.read_manifest(self.dataset_path, self.ds)
        recorded = (previous.file_rows or {}) if previous is not None else {}
        mine = set(self.files)
        rows = {name: recorded[name] if name not in mine and name in recorded
                else footer_rows(self.lake, f"{self.folder}/{name}") for name in manifest.files}
        if manifest.row_count is not None and sum(rows.values()) != manifest.row_count:
            raise ValueError(f"{partition_name(self.dataset_path, self.ds)}: the files hold {sum(rows.values())} rows "
                             f"but the manifest says {manifest.row_count}; nothing was committed")
        return manifest.updated(file_rows=rows)

    def abort(self) -> None:
        """Remove this attempt's files that the committed manifest does not list (best effort)."""
        committed = self.lake.read_manifest(self.dataset_path, self.ds)
        listed = set(committed.files) if committed is not None else set()
        for name in self.files:
            if name not in listed:
                with contextlib.suppress(OSError):
                    self.lake.fs.delete_file(f"{self.folder}/{name}")
        with contextlib.suppress(OSError):
            if self.lake.exists(self.lake.path(self.stage_dir())):
                self.lake.fs.delete_dir(self.lake.path(self.stage_dir()))


def sweep(lake: Lake, dataset_path: str, ds: str, keep: Iterable[str]) -> None:
    """Remove everything in the ds folder but the manifest and the files in ``keep``."""
    keep = {*keep, MANIFEST}
    folder = lake.path(Lake.partition(dataset_path, ds))
    for info in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=False)):
        if info.base_name not in keep:
            if info.type == pafs.FileType.Directory:
                lake.fs.delete_dir(info.path)
            else:
                lake.fs.delete_file(info.path)


def remove_partition(lake: Lake, dataset_path: str, ds: str) -> None:
    """Uncommit a ds (manifest first) and remove its files: for a side output that a re-run
    no longer has (never as the first step of a rewrite: use ``PartitionWriter``)."""
    part = lake.path(Lake.partition(dataset_path, ds))
    manifest = f"{part}/{MANIFEST}"
    if lake.exists(manifest):
        lake.fs.delete_file(manifest)
    if lake.exists(part):
        lake.fs.delete_dir(part)


class PushWriter:
    """Feed ``PartitionWriter.write_batches`` one batch at a time (a side output such as
    quarantine, filled while the main output streams)."""

    def __init__(self, partition: PartitionWriter, schema: pa.Schema, **options) -> None:
        self.partition = partition
        self._queue: deque[pa.RecordBatch] = deque()
        self._gen = partition.write_batches(schema, self._source(), **options)

    def _source(self) -> Iterator[pa.RecordBatch]:
        while self._queue:
            yield self._queue.popleft()

    @property
    def files(self) -> list[str]:
        return self.partition.files

    def push(self, batch: pa.RecordBatch) -> None:
        self._queue.append(batch)
        next(self._gen)

    def close(self) -> None:
        for _ in self._gen:
            pass

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._gen.close()


# -- a raw dataset partition, measured while written ----------------------------------------
def land(
    lake: Lake,
    dataset: Dataset,
    ds: str,
    batches: Iterable[pa.RecordBatch],
    *,
    source_count: int,
    watermark: dict,
    mode: str,
    schema: pa.Schema | None = None,
    extra: dict | Callable[[], dict] | None = None,
) -> Manifest:
    """Replace ``dataset``'s ds partition with ``batches`` and commit it with a manifest.

    The manifest records the row count and key checksum of what was written (computed while
    writing, never re-read), the source's own count for the same interval, and the
    watermark range covered; ``extra`` (or what it returns, called once every row has been
    consumed) adds the source's own values.
    """
    schema = schema or arrow_schema(dataset)
    writer = PartitionWriter(lake, dataset.lake_path, ds)
    acc = KeyChecksum()
    for batch in writer.write_batches(schema, batches):
        acc.update_arrow(batch.column(dataset.key))
    if callable(extra):  # evaluated once every row has been consumed
        extra = extra()
    return writer.commit(Manifest(
        dataset=dataset.dataset_id,
        key=dataset.key,
        files=list(writer.files),
        row_count=acc.count,
        key_checksum=acc.hexdigest(),
        source_count=source_count,
        watermark=watermark,
        mode=mode,
        schema_fingerprint=schema_fingerprint(schema),
        extra={**(extra or {}), "extracted_at": datetime.now(UTC).isoformat()},
    ))


def interval_start(lake: Lake, dataset: Dataset, ds: str, start: datetime) -> tuple[datetime | None, str]:
    """Incremental from ``start`` if an earlier ds is committed, else a full initial load."""
    earlier = [d for d in lake.committed(dataset.lake_path) if d < ds]
    return (start, "incremental") if earlier else (None, "full")
