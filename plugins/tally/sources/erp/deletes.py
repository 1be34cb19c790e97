"""Hard deletes in the ERP, found by comparing keys (the ERP keeps no record of a delete).

``landed_keys`` is what Tally believes exists: every key landed in a committed raw ds before
this one, minus keys whose latest landed version is a tombstone. ``missing_keys`` streams the
source's current key set (keys only: an index-only scan on the primary key, pushed down as
``SELECT key``) and returns the landed keys the source no longer has: they become tombstones,
rows built by ``tombstones`` (the extractor and the full reconciliation's heal write them alike).

Memory: the landed key set is one sorted numpy array (8 bytes per key for integer keys:
40 MB at 5M keys) plus one byte per key for "seen"; source keys are streamed in batches and
matched by binary search, so neither side is ever materialised as Python objects. Reading
the landed keys reads only the key and ``_deleted`` columns of the raw Parquet files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tally.catalog import ERP_DELETED, Dataset
from tally.lake import ARROW_TYPES, Lake
from tally.lake.verify import KeyCheck, check_footers


def _numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.to_numpy(zero_copy_only=False)


def _unique(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.array([], dtype=dtype)


def landed_keys(lake: Lake, dataset: Dataset, partitions: Iterable[str]) -> np.ndarray:
    """Sorted unique keys alive in the lake after ``partitions`` (ds ascending)."""
    flag = dataset.deleted_flag
    dtype = object if ARROW_TYPES[next(f.type for f in dataset.fields if f.name == dataset.key)] == pa.string() \
        else np.int64
    alive = np.array([], dtype=dtype)
    pending: list[np.ndarray] = []
    pending_size = 0
    # keys ever tombstoned -> whether their latest landed version is a tombstone
    dead: dict = {}
    for ds in sorted(partitions):
        # a verifying reader (tally.lake.verify): footers first, the key checksum while streaming
        manifest = lake.committed_manifest(dataset.lake_path, ds)
        check_footers(lake, dataset.lake_path, ds, manifest)
        check = KeyCheck(dataset.lake_path, ds, manifest)
        for path in lake.files(dataset.lake_path, ds):
            pf = pq.ParquetFile(path, filesystem=lake.fs)
            names = set(pf.schema_arrow.names)
            columns = [dataset.key, *([flag] if flag and flag in names else [])]
            if check.key and check.key not in columns:
                columns.append(check.key)
            for batch in pf.iter_batches(batch_size=262_144, columns=columns):
                check.update(batch)
                keys = batch.column(dataset.key)
                deleted = batch.column(flag) if flag in batch.schema.names else None
                if deleted is not None and pc.any(deleted).as_py():
                    tomb = _numpy(keys.filter(deleted))
                    live = _numpy(keys.filter(pc.invert(deleted)))
                    dead.update(dict.fromkeys(tomb.tolist(), True))
                else:
                    live = _numpy(keys)
                if dead and len(live):
                    revived = np.isin(live, np.array(list(dead), dtype=live.dtype))
                    for k in live[revived].tolist():
                        dead[k] = False
                pending.append(live)
                pending_size += len(live)
                if pending_size > max(len(alive), 1_000_000):  # compact: keep memory near the unique count
                    alive = _unique([alive, *pending], dtype)
                    pending, pending_size = [], 0
        check.finish()
    alive = _unique([alive, *pending], dtype)
    gone = [k for k, is_dead in dead.items() if is_dead]
    if gone:
        alive = alive[~np.isin(alive, np.array(gone, dtype=alive.dtype))]
    return alive


def missing_keys(landed: np.ndarray, source_keys: Iterator[np.ndarray]) -> tuple[np.ndarray, int]:
    """(landed keys absent from the source, number of source keys seen)."""
    seen = np.zeros(len(landed), dtype=bool)
    count = 0
    for batch in source_keys:
        count += len(batch)
        if not len(landed) or not len(batch):
            continue
        pos = np.searchsorted(landed, batch)
        inside = pos < len(landed)
        pos = pos[inside]
        hit = landed[pos] == batch[inside]
        seen[pos[hit]] = True
    return landed[~seen], count


def tombstones(dataset: Dataset, schema: pa.Schema, keys: np.ndarray, at: datetime,
               batch_size: int) -> Iterator[pa.RecordBatch]:
    """Tombstone rows of ``keys`` in the raw ``schema``, ``batch_size`` a batch: the key,
    the cursor = ``at``, ``_deleted`` true and every other column null."""
    for lo in range(0, len(keys), batch_size):
        part = keys[lo:lo + batch_size]
        n = len(part)
        arrays = []
        for f in schema:
            if f.name == dataset.key:
                arrays.append(pa.array(part, f.type))
            elif f.name == dataset.cursor:
                arrays.append(pa.array([at] * n, f.type))
            elif f.name == ERP_DELETED:
                arrays.append(pa.array([True] * n, pa.bool_()))
            else:
                arrays.append(pa.nulls(n, f.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)
