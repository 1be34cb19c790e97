"""Legacy ERP extraction: one table, one data interval on ``updated_at``, streamed to the lake.

For partition ``ds`` covering ``[start, end)``, inside one read-only REPEATABLE READ snapshot
(Postgres or MySQL/MariaDB, see ``erp_dialect``):

1. **Window.** ``updated_at >= start - overlap AND updated_at < end``; the overlap
   (``TALLY_ERP_OVERLAP_SECONDS``, default 300) re-reads rows whose transaction committed after
   the previous run with an older ``updated_at``. Re-read rows are counted apart
   (``overlap_rows``); downstream keeps the latest version per key. The first ds of a table,
   and every ds of a table configured for a *full reload* (``Dataset.extra["full_reload"]`` or
   ``TALLY_ERP_FULL_RELOAD=products,…``), reads the whole table (``mode: "full"``).
2. **Count and checksum.** One aggregate over the same window: the source's own row count
   (``source_count``) and the key checksum of its rows, computed by the source
   (``Session.count_and_checksum``).
3. **Hard deletes.** The source's current keys (keys only) against the keys landed in every
   committed ds before this one (``erp_deletes``). Each landed key the source no longer has
   lands as a **tombstone** in this ds's partition: the key, ``updated_at`` = the interval end,
   ``_deleted = true``, every other column null. Rows read from the table carry
   ``_deleted = false``.
4. **Rows.** Streamed as text in batches (constant memory), typed in Arrow
   (``erp_convert``: money exact, timestamps UTC, text as text) and written to Parquet one row
   group per batch. Rows that cannot be typed (a null in a required column, a value that does
   not parse) go to the **quarantine** zone, ``quarantine/erp/<table>/ds=<ds>/``, as text with
   a ``reason``.

**Reconciliation.** ``row_count = source_count - quarantined + tombstones``: the raw gate checks
exactly that (``pipeline.gate_raw``), and the manifest records the three numbers.

**Key checksum.** The source's checksum of the window (its ``md5`` sums run in the database, in C,
and off the COPY: hashing inside the COPY costs the server 70 % more per row), minus the
hashes of the quarantined rows' keys (hashed here from the source's own text), plus the
tombstones' hashes. It describes exactly the rows that land because every row of the snapshot
is accounted for: ``rows written + quarantined = source_count`` is checked before the commit,
in the same snapshot as the aggregate. A few landed keys are re-hashed in Python and compared
with the source's expression, to prove both render keys alike.
``TALLY_ERP_SOURCE_KEY_HASH=false`` hashes every landed key in Python instead.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tally.catalog import ERP_DELETED, Dataset
from tally.checksum import MOD, key_hash
from tally.lake import ARROW_TYPES, Lake, new_attempt, schema_fingerprint
from tally.sources.erp_convert import Converter, caster
from tally.sources.erp_deletes import landed_keys, missing_keys
from tally.sources.erp_dialect import ErpConn, Session, open_session

SPOT_CHECKS = 4  # landed keys whose source-side hash is re-computed in Python


@dataclass(frozen=True)
class ErpOptions:
    overlap: timedelta = timedelta(minutes=5)
    batch_size: int = 50_000
    timezone: str = "UTC"  # how the source's timestamps without an offset are to be read
    full_reload: frozenset[str] = frozenset()  # tables reloaded whole, besides the catalog's
    source_key_hash: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ErpOptions:
        env = dict(os.environ if env is None else env)
        return cls(
            overlap=timedelta(seconds=int(env.get("TALLY_ERP_OVERLAP_SECONDS", "300"))),
            batch_size=int(env.get("TALLY_ERP_BATCH_SIZE", "50000")),
            timezone=env.get("TALLY_ERP_TIMEZONE", "UTC"),
            full_reload=frozenset(t.strip() for t in env.get("TALLY_ERP_FULL_RELOAD", "").split(",") if t.strip()),
            source_key_hash=env.get("TALLY_ERP_SOURCE_KEY_HASH", "true").lower() not in ("0", "false", "no"),
        )

    def reloads_fully(self, dataset: Dataset) -> bool:
        return bool(dataset.extra.get("full_reload")) or dataset.name in self.full_reload


def raw_schema(dataset: Dataset) -> pa.Schema:
    """The raw zone's schema: the catalog's fields plus ``_deleted``.

    Only the key, the cursor and ``_deleted`` are non-nullable: tombstones carry nothing else.
    """
    required = {dataset.key, dataset.cursor}
    return pa.schema([
        *(pa.field(f.name, ARROW_TYPES[f.type], f.name not in required) for f in dataset.fields),
        pa.field(ERP_DELETED, pa.bool_(), False),
    ])


def writer_options(schema: pa.Schema) -> dict:
    """Dictionary-encode text and flags only: on ids, amounts and timestamps it rarely pays and
    doubles the cost of writing."""
    return {"use_dictionary": [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)]}


def quarantine_path(dataset: Dataset) -> str:
    return f"quarantine/{dataset.source}/{dataset.name}"


class KeyHashSum:
    """The key checksum (``tally.checksum``) from 64-bit hash values, summed modulo 2**64."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add_sum(self, total: int, count: int) -> None:
        self.total = (self.total + total) % MOD
        self.count += count

    def add_keys(self, keys: list) -> None:
        self.add_sum(sum(key_hash(k) for k in keys), len(keys))

    def remove_keys(self, keys: list) -> None:
        self.add_sum(-sum(key_hash(k) for k in keys), -len(keys))

    def hexdigest(self) -> str:
        return format(self.total, "016x")


class _PushWriter:
    """Feed ``Lake.write_batches`` one batch at a time (for a side output such as quarantine)."""

    def __init__(self, lake: Lake, path: str, ds: str, schema: pa.Schema, attempt: str) -> None:
        self._queue: deque[pa.RecordBatch] = deque()
        self._gen = lake.write_batches(path, ds, schema, self._source(), attempt=attempt)
        self.files: list[str] = []

    def _source(self) -> Iterator[pa.RecordBatch]:
        while self._queue:
            yield self._queue.popleft()

    def _note(self, name: str) -> None:
        if name not in self.files:
            self.files.append(name)

    def push(self, batch: pa.RecordBatch) -> None:
        self._queue.append(batch)
        name, _ = next(self._gen)
        self._note(name)

    def close(self) -> None:
        for name, _ in self._gen:
            self._note(name)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._gen.close()


def _window(s: Session, dataset: Dataset, start: datetime | None, end: datetime) -> str:
    cur = s.quote(dataset.cursor)
    if start is None:  # a full read also takes rows without a cursor value (and quarantines them)
        return f"({cur} < {s.literal(end)} OR {cur} IS NULL)"
    return f"{cur} >= {s.literal(start)} AND {cur} < {s.literal(end)}"


def _source_keys(s: Session, dataset: Dataset, batch_size: int) -> Iterator[np.ndarray]:
    key = next(f for f in dataset.fields if f.name == dataset.key)
    cast = caster(key)
    query = f"SELECT {s.quote(key.name)} FROM {s.quote(dataset.name)} WHERE {s.quote(key.name)} IS NOT NULL"  # noqa: S608
    for batch in s.stream_text(query, [key.name], max(batch_size, 100_000)):
        yield cast(batch.column(0)).to_numpy(zero_copy_only=False)


def _tombstones(dataset: Dataset, schema: pa.Schema, keys: np.ndarray, at: datetime,
                batch_size: int) -> Iterator[pa.RecordBatch]:
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


def extract(conn_info: ErpConn, lake: Lake, dataset: Dataset, ds: str, start: datetime, end: datetime,
            batch_size: int | None = None, options: ErpOptions | None = None) -> dict:
    """Land ``dataset`` for ``[start - overlap, end)`` as partition ``ds``; returns the manifest."""
    opts = options or ErpOptions.from_env()
    batch_size = batch_size or opts.batch_size
    began = time.monotonic()
    earlier = [d for d in lake.committed(dataset.lake_path) if d < ds]
    full = opts.reloads_fully(dataset) or not earlier
    since, mode = (None, "full") if full else (start, "incremental")
    window_start = since - opts.overlap if since is not None else None
    fields = dataset.fields
    names = [f.name for f in fields]
    schema = raw_schema(dataset)
    key_index = names.index(dataset.key)
    attempt = new_attempt()
    stats = {"overlap_rows": 0, "quarantined": 0, "rows": 0}
    reasons: Counter[str] = Counter()
    checksum = KeyHashSum()
    quarantine: _PushWriter | None = None
    since_scalar = pa.scalar(since, ARROW_TYPES["datetime"]) if since is not None else None

    with open_session(conn_info, opts.timezone) as s:
        where = _window(s, dataset, window_start, end)
        key_sql = s.quote(dataset.key)
        if opts.source_key_hash:
            source_count, keyed, source_sum = s.count_and_checksum(dataset.name, where, key_sql)
            checksum.add_sum(source_sum, keyed)  # quarantined keys come off below
        else:
            source_count = s.count(dataset.name, where)
        delete_check: dict = {"landed_keys": 0, "source_keys": None}
        tomb_keys = np.array([], dtype=np.int64)
        if earlier:
            landed = landed_keys(lake, dataset, earlier)
            tomb_keys, source_keys = missing_keys(landed, _source_keys(s, dataset, batch_size))
            delete_check = {"landed_keys": len(landed), "source_keys": source_keys}
            del landed
        columns = [s.quote(n) for n in names]
        query = f"SELECT {', '.join(columns)} FROM {s.quote(dataset.name)} WHERE {where}"  # noqa: S608
        converter = Converter(fields, opts.timezone)
        spot_keys: list = []

        def raw_batches() -> Iterator[pa.RecordBatch]:
            nonlocal quarantine
            for converted in s.stream_converted(query, names, batch_size, converter):
                if converted.bad is not None:
                    if quarantine is None:
                        quarantine = _PushWriter(lake, quarantine_path(dataset), ds, converter.quarantine_schema,
                                                 attempt)
                    quarantine.push(converted.bad)
                    stats["quarantined"] += converted.bad.num_rows
                    reasons.update(converted.bad.column("reason").to_pylist())
                    if opts.source_key_hash:  # the source summed them (as its own text), they do not land
                        checksum.remove_keys(converted.bad.column(dataset.key).drop_null().to_pylist())
                good = converted.good
                if not good.num_rows:
                    continue
                if opts.source_key_hash:
                    if len(spot_keys) < SPOT_CHECKS:
                        spot_keys.extend(good.column(key_index).slice(0, SPOT_CHECKS - len(spot_keys)).to_pylist())
                else:
                    checksum.add_keys(good.column(key_index).to_pylist())
                if since_scalar is not None:
                    stats["overlap_rows"] += pc.sum(pc.less(good.column(dataset.cursor), since_scalar)).as_py() or 0
                stats["rows"] += good.num_rows
                yield pa.RecordBatch.from_arrays([*good.columns, pa.array(np.zeros(good.num_rows, dtype=bool))],
                                                 schema=schema)
            if len(tomb_keys):
                checksum.add_keys(tomb_keys.tolist())
                yield from _tombstones(dataset, schema, tomb_keys, end, batch_size)

        files: list[str] = []
        try:
            for name, _batch in lake.write_batches(dataset.lake_path, ds, schema, raw_batches(), attempt=attempt,
                                                   writer_options=writer_options(schema)):
                if name not in files:
                    files.append(name)
        except BaseException:
            if quarantine is not None:
                quarantine.abort()
            raise
        if stats["rows"] + stats["quarantined"] != source_count:
            if quarantine is not None:
                quarantine.abort()
            raise RuntimeError(f"{dataset.dataset_id}: the source counted {source_count} rows in the window but "
                               f"{stats['rows']} landed and {stats['quarantined']} were quarantined")
        if spot_keys:
            _spot_check(s, dataset, key_sql, spot_keys)
        dialect = s.name

    quarantine_files: list[str] = []
    if quarantine is not None:  # the quarantine partition is committed before the raw one
        quarantine.close()
        quarantine_files = quarantine.files
        lake.commit(quarantine_path(dataset), ds, {
            "dataset": dataset.dataset_id, "files": quarantine_files, "row_count": stats["quarantined"],
            "reasons": dict(reasons), "raw_attempt": attempt, "schema_fingerprint":
                schema_fingerprint(converter.quarantine_schema),
        })
    else:
        lake.clear_partition(quarantine_path(dataset), ds)  # a re-run that found nothing bad

    tombstones = int(len(tomb_keys))
    row_count = stats["rows"] + tombstones
    if checksum.count != row_count:
        raise RuntimeError(f"{dataset.dataset_id}: checksummed {checksum.count} keys but wrote {row_count} rows")
    elapsed = time.monotonic() - began
    return lake.commit(dataset.lake_path, ds, {
        "dataset": dataset.dataset_id,
        "key": dataset.key,
        "files": files,
        "row_count": row_count,
        "key_checksum": checksum.hexdigest(),
        "source_count": source_count,
        "tombstones": tombstones,
        "quarantined": stats["quarantined"],
        "quarantine": {"path": lake.partition(quarantine_path(dataset), ds), "files": quarantine_files,
                       "reasons": dict(reasons)},
        "overlap_rows": stats["overlap_rows"],
        "watermark": {"column": dataset.cursor,
                      "start": window_start.isoformat() if window_start else None,
                      "interval_start": since.isoformat() if since else None,
                      "end": end.isoformat(),
                      "overlap_seconds": int(opts.overlap.total_seconds())},
        "mode": mode,
        "full_reload": opts.reloads_fully(dataset),
        "delete_detection": delete_check,
        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
        "schema_fingerprint": schema_fingerprint(schema),
        "dialect": dialect,
        "batch_size": batch_size,
        "elapsed_seconds": round(elapsed, 3),
        "extracted_at": datetime.now(UTC).isoformat(),
    })


def _spot_check(s: Session, dataset: Dataset, key_sql: str, keys: list) -> None:
    """The source's hash of a few landed keys equals ``tally.checksum``'s of the typed key."""
    for key in keys:
        value = s.scalar(f"SELECT {s.key_hash_sql(key_sql)} FROM {s.quote(dataset.name)} "  # noqa: S608
                         f"WHERE {key_sql} = {s.literal(key)}")
        if value is None or key_hash(key) != int(value) % MOD:
            raise RuntimeError(
                f"{dataset.dataset_id}: the source's key hash for {key!r} differs from tally.checksum's "
                "(the key's text form differs between the database and Python); set "
                "TALLY_ERP_SOURCE_KEY_HASH=false to hash keys in Python"
            )
