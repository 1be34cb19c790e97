"""Land one dataset's rows for one ds in the raw zone, with its manifest (the commit marker)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

import pyarrow as pa

from tally.catalog import Dataset
from tally.checksum import KeyChecksum
from tally.lake import Lake, arrow_schema, schema_fingerprint


def batches_from_rows(rows: Iterable[dict], schema: pa.Schema, batch_size: int = 10_000) -> Iterator[pa.RecordBatch]:
    """Group typed row dicts into Arrow record batches of ``batch_size`` (bounded memory)."""
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch_size:
            yield pa.RecordBatch.from_pylist(chunk, schema=schema)
            chunk = []
    if chunk:
        yield pa.RecordBatch.from_pylist(chunk, schema=schema)


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
) -> dict:
    """Replace ``dataset``'s ds partition with ``batches`` and commit it with a manifest.

    The previous version stays committed until the new manifest is written (see ``Lake``).

    The manifest records the row count and key checksum of what was written (computed while
    writing, never re-read), the source's own count for the same interval, and the
    watermark range covered.
    """
    schema = schema or arrow_schema(dataset)
    acc = KeyChecksum()
    files: list[str] = []
    for name, batch in lake.write_batches(dataset.lake_path, ds, schema, batches):
        if name not in files:
            files.append(name)
        acc.update(batch.column(dataset.key).to_pylist())
    if callable(extra):  # evaluated once every row has been consumed
        extra = extra()
    return lake.commit(dataset.lake_path, ds, {
        **(extra or {}),
        "dataset": dataset.dataset_id,
        "key": dataset.key,
        "files": files,
        "row_count": acc.count,
        "key_checksum": acc.hexdigest(),
        "source_count": source_count,
        "watermark": watermark,
        "mode": mode,
        "schema_fingerprint": schema_fingerprint(schema),
        "extracted_at": datetime.now(UTC).isoformat(),
    })


def interval_start(lake: Lake, dataset: Dataset, ds: str, start: datetime) -> tuple[datetime | None, str]:
    """Incremental from ``start`` if an earlier ds is committed, else a full initial load."""
    earlier = [d for d in lake.committed(dataset.lake_path) if d < ds]
    return (start, "incremental") if earlier else (None, "full")
