"""The lake's Arrow types: the catalog's field types in Arrow, a schema's fingerprint, and
typed row dicts grouped into record batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import pyarrow as pa

from tally.catalog import Dataset

ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "int": pa.int64(),
    "decimal": pa.decimal128(38, 9),
    "double": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(dataset: Dataset) -> pa.Schema:
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], f.nullable) for f in dataset.fields])


def schema_fingerprint(schema: pa.Schema) -> str:
    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
