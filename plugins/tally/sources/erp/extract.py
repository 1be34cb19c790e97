"""Legacy ERP extraction: one table, one data interval on ``updated_at``, streamed to the lake.

``ErpSource`` is an :class:`tally.sources.base.IntervalSource` (name ``"erp"``); each call of its
``extract`` is one ``_Extraction``, whose steps share the run's state as attributes.

For partition ``ds`` covering ``[start, end)``, inside one read-only REPEATABLE READ snapshot
(Postgres or MySQL/MariaDB, see ``tally.sources.erp.dialect``):

1. **Window.** ``updated_at >= start - overlap AND updated_at < end``; the overlap
   (``TALLY_ERP_OVERLAP_SECONDS``, default 300) re-reads rows whose transaction committed after
   the previous run with an older ``updated_at``. Re-read rows are counted apart
   (``overlap_rows``); downstream keeps the latest version per key. The first ds of a table,
   and every ds of a table configured for a *full reload* (``Dataset.extra["full_reload"]`` or
   ``TALLY_ERP_FULL_RELOAD=products,…``), reads the whole table (``mode: "full"``). Every
   window also takes the rows dated in the future (``updated_at`` later than the extraction's
   clock plus ``TALLY_FUTURE_SKEW_SECONDS``): no ended interval holds them, so they are read to
   be quarantined (``tally.sources.quarantine``), never left uncounted.
2. **Count and checksum.** One aggregate over the same window: the source's own row count
   (``source_count``) and the key checksum of its rows, computed by the source
   (``Session.count_and_checksum``).
3. **Hard deletes.** The source's current keys (keys only) against the keys landed in every
   committed ds before this one (``tally.sources.erp.deletes``). Each landed key the source no
   longer has lands as a **tombstone** in this ds's partition: the key, ``updated_at`` = the
   interval end, ``_deleted = true``, every other column null. Rows read from the table carry
   ``_deleted = false``.
4. **Rows.** Streamed as text in batches (constant memory), typed in Arrow
   (``tally.sources.erp.convert``: money exact, timestamps UTC, text as text) and written to
   Parquet one row group per batch. Rows that cannot be typed (a null in a required column, a value that does
   not parse) and future-dated rows go to the **quarantine** zone,
   ``quarantine/erp/<table>/ds=<ds>/``, as text with a ``reason``.
5. **Schema drift.** The table's columns and types (``Session.columns``) are recorded as
   ``source_fields`` and compared with the previous ds's (``tally.sources.drift``):
   ``schema_drift`` in the manifest, checked by the raw gate. A removed column is read as null.

**Reconciliation.** ``row_count = source_count - quarantined + tombstones``: the raw gate checks
exactly that (``tally.gates.raw``), and the manifest records the three numbers.

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

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tally.catalog import ERP_DELETED, Dataset
from tally.lake import ARROW_TYPES, Lake, Manifest, PartitionWriter, new_attempt, schema_fingerprint
from tally.lake.checksum import MOD, KeyChecksum, key_hash
from tally.sources.base import Progress
from tally.sources.drift import Drift, compare
from tally.sources.erp.convert import Converter, caster
from tally.sources.erp.deletes import landed_keys, missing_keys, tombstones
from tally.sources.erp.dialect import ErpConn, Session, open_session
from tally.sources.quarantine import Quarantine, future_cutoff, future_skew_from_env, quarantine_path

__all__ = ["ErpOptions", "ErpSource", "quarantine_path", "raw_schema", "writer_options"]

if TYPE_CHECKING:
    from tally.core.resources import Resources

SPOT_CHECKS = 4  # landed keys whose source-side hash is re-computed in Python


@dataclass(frozen=True)
class ErpOptions:
    overlap: timedelta = timedelta(minutes=5)
    batch_size: int = 50_000
    timezone: str = "UTC"  # how the source's timestamps without an offset are to be read
    full_reload: frozenset[str] = frozenset()  # tables reloaded whole, besides the catalog's
    source_key_hash: bool = True
    future_skew: timedelta = timedelta(minutes=5)  # a cursor later than now + this is in the future

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ErpOptions:
        env = dict(os.environ if env is None else env)
        return cls(
            overlap=timedelta(seconds=int(env.get("TALLY_ERP_OVERLAP_SECONDS", "300"))),
            batch_size=int(env.get("TALLY_ERP_BATCH_SIZE", "50000")),
            timezone=env.get("TALLY_ERP_TIMEZONE", "UTC"),
            full_reload=frozenset(t.strip() for t in env.get("TALLY_ERP_FULL_RELOAD", "").split(",") if t.strip()),
            source_key_hash=env.get("TALLY_ERP_SOURCE_KEY_HASH", "true").lower() not in ("0", "false", "no"),
            future_skew=future_skew_from_env(env),
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


def _window(s: Session, dataset: Dataset, start: datetime | None, end: datetime, future: datetime) -> str:
    """The rows of ``[start, end)`` and the rows dated after ``future`` (quarantined: no interval
    that has ended holds them, so no run would ever read them otherwise)."""
    cur = s.quote(dataset.cursor)
    if start is None:  # a full read also takes rows without a cursor value (and quarantines them)
        return f"({cur} < {s.literal(end)} OR {cur} IS NULL OR {cur} > {s.literal(future)})"
    return f"(({cur} >= {s.literal(start)} AND {cur} < {s.literal(end)}) OR {cur} > {s.literal(future)})"


def source_drift(s: Session, dataset: Dataset, previous: dict[str, str] | None) -> tuple[dict[str, str] | None, Drift]:
    """The table's columns now (name -> the database's type) and their drift from ``previous``
    (the last committed ds's ``source_fields``; ``tally.sources.drift``). The catalog's fields
    are what lands; a column the catalog does not name is reported as added, never landed.
    No columns readable (no access to the catalog views): no drift is measured."""
    now = s.columns(dataset.name)
    if not now:
        return None, Drift()
    return now, compare({f.name: (previous or {}).get(f.name) for f in dataset.fields}, now, previous)


def _previous_source_fields(lake: Lake, dataset: Dataset, earlier: list[str]) -> dict[str, str] | None:
    if not earlier:
        return None
    manifest = lake.read_manifest(dataset.lake_path, earlier[-1])
    return dict(manifest["source_fields"]) if manifest and manifest.get("source_fields") else None


def _source_keys(s: Session, dataset: Dataset, batch_size: int) -> Iterator[np.ndarray]:
    key = next(f for f in dataset.fields if f.name == dataset.key)
    cast = caster(key)
    query = f"SELECT {s.quote(key.name)} FROM {s.quote(dataset.name)} WHERE {s.quote(key.name)} IS NOT NULL"  # noqa: S608
    for batch in s.stream_text(query, [key.name], max(batch_size, 100_000)):
        yield cast(batch.column(0)).to_numpy(zero_copy_only=False)


class ErpSource:
    """The ERP database (Postgres or MySQL/MariaDB), an interval source."""

    name = "erp"

    def __init__(self, conn: ErpConn, options: ErpOptions | None = None) -> None:
        self.conn = conn
        self.options = options or ErpOptions.from_env()

    @classmethod
    def from_resources(cls, res: Resources) -> ErpSource:
        if res.erp is None:
            raise ValueError("no ERP connection configured")
        return cls(res.erp)

    def extract(self, lake: Lake, dataset: Dataset, ds: str, start: datetime, end: datetime,
                progress: Progress | None = None) -> Manifest:
        """Land ``dataset`` for ``[start - overlap, end)`` as partition ``ds``; returns the manifest."""
        return _Extraction(self.conn, self.options, lake, dataset, ds, start, end, progress).run()


class _Extraction:
    """One ``ErpSource.extract`` run: its steps share the window, the writers and the counts here."""

    def __init__(self, conn: ErpConn, opts: ErpOptions, lake: Lake, dataset: Dataset, ds: str,
                 start: datetime, end: datetime, progress: Progress | None) -> None:
        self.conn, self.opts, self.lake, self.dataset, self.ds, self.end = conn, opts, lake, dataset, ds, end
        self.progress = progress
        self.began = time.monotonic()
        self.earlier = [d for d in lake.committed(dataset.lake_path) if d < ds]
        full = opts.reloads_fully(dataset) or not self.earlier
        self.since, self.mode = (None, "full") if full else (start, "incremental")
        self.window_start = self.since - opts.overlap if self.since is not None else None
        self.since_scalar = pa.scalar(self.since, ARROW_TYPES["datetime"]) if self.since is not None else None
        self.future = future_cutoff(opts.future_skew)
        self.names = [f.name for f in dataset.fields]
        self.schema = raw_schema(dataset)
        self.key_index = self.names.index(dataset.key)
        self.attempt = new_attempt()
        self.raw = PartitionWriter(lake, dataset.lake_path, ds, self.attempt)
        self.converter = Converter(dataset.fields, opts.timezone, future=(dataset.cursor, self.future))
        self.quarantine = Quarantine(lake, dataset, ds, self.attempt, self.converter.quarantine_schema)
        self.checksum = KeyChecksum()
        self.rows = 0
        self.overlap_rows = 0
        self.spot_keys: list = []
        self.tomb_keys = np.array([], dtype=np.int64)
        self.delete_check: dict = {"landed_keys": 0, "source_keys": None}
        self.source_fields: dict[str, str] | None = None
        self.drift = Drift()

    @property
    def quarantined(self) -> int:
        return self.quarantine.count

    def run(self) -> Manifest:
        dataset, opts = self.dataset, self.opts
        with open_session(self.conn, opts.timezone) as s:
            self.source_fields, self.drift = source_drift(
                s, dataset, _previous_source_fields(self.lake, dataset, self.earlier))
            where = _window(s, dataset, self.window_start, self.end, self.future)
            key_sql = s.quote(dataset.key)
            if opts.source_key_hash:
                source_count, keyed, source_sum = s.count_and_checksum(dataset.name, where, key_sql)
                self.checksum.add_sum(source_sum, keyed)  # quarantined keys come off below
            else:
                source_count = s.count(dataset.name, where)
            if self.earlier:
                self._find_deletes(s)
            # a column the source no longer has is read as null (and the raw gate fails on it)
            columns = [f"NULL AS {s.quote(n)}" if n in self.drift.removed else s.quote(n) for n in self.names]
            query = f"SELECT {', '.join(columns)} FROM {s.quote(dataset.name)} WHERE {where}"  # noqa: S608
            try:
                self.raw.write(self.schema, self._raw_batches(s, query), writer_options=writer_options(self.schema))
            except BaseException:
                self._abort_quarantine()
                raise
            if self.rows + self.quarantined != source_count:
                self._abort_quarantine()
                raise RuntimeError(f"{dataset.dataset_id}: the source counted {source_count} rows in the window but "
                                   f"{self.rows} landed and {self.quarantined} were quarantined")
            if self.spot_keys:
                _spot_check(s, dataset, key_sql, self.spot_keys)
            dialect = s.name
        self.quarantine.commit()
        committed = self._commit(source_count, dialect)
        self.quarantine.settle()
        return committed

    def _find_deletes(self, s: Session) -> None:
        """Landed keys the source no longer has: they land as tombstones."""
        landed = landed_keys(self.lake, self.dataset, self.earlier)
        self.tomb_keys, source_keys = missing_keys(landed, _source_keys(s, self.dataset, self.opts.batch_size))
        self.delete_check = {"landed_keys": len(landed), "source_keys": source_keys}

    def _raw_batches(self, s: Session, query: str) -> Iterator[pa.RecordBatch]:
        dataset, opts, schema, checksum = self.dataset, self.opts, self.schema, self.checksum
        for converted in s.stream_converted(query, self.names, opts.batch_size, self.converter):
            if converted.bad is not None:
                self._set_aside(converted.bad)
            good = converted.good
            if not good.num_rows:
                continue
            if opts.source_key_hash:
                if len(self.spot_keys) < SPOT_CHECKS:
                    self.spot_keys.extend(
                        good.column(self.key_index).slice(0, SPOT_CHECKS - len(self.spot_keys)).to_pylist())
            else:
                checksum.update_arrow(good.column(self.key_index))
            if self.since_scalar is not None:
                self.overlap_rows += pc.sum(pc.less(good.column(dataset.cursor), self.since_scalar)).as_py() or 0
            self.rows += good.num_rows
            if self.progress is not None:
                self.progress(self.rows + self.quarantined)
            yield pa.RecordBatch.from_arrays([*good.columns, pa.array(np.zeros(good.num_rows, dtype=bool))],
                                             schema=schema)
        if len(self.tomb_keys):
            checksum.update(self.tomb_keys.tolist())
            yield from tombstones(dataset, schema, self.tomb_keys, self.end, opts.batch_size)

    def _set_aside(self, bad: pa.RecordBatch) -> None:
        """Rows that cannot be typed (or are dated in the future) go to the quarantine zone, as
        the source's text."""
        self.quarantine.push(bad)
        if self.opts.source_key_hash:  # the source summed them (as its own text), they do not land
            self.checksum.remove(bad.column(self.dataset.key).drop_null().to_pylist())

    def _abort_quarantine(self) -> None:
        self.quarantine.abort()

    def _commit(self, source_count: int, dialect: str) -> Manifest:
        dataset, opts, since, window_start = self.dataset, self.opts, self.since, self.window_start
        tomb_count = int(len(self.tomb_keys))
        row_count = self.rows + tomb_count
        if self.checksum.count != row_count:
            raise RuntimeError(f"{dataset.dataset_id}: checksummed {self.checksum.count} keys but wrote "
                               f"{row_count} rows")
        elapsed = time.monotonic() - self.began
        return self.raw.commit(Manifest(
            dataset=dataset.dataset_id,
            key=dataset.key,
            files=list(self.raw.files),
            row_count=row_count,
            key_checksum=self.checksum.hexdigest(),
            source_count=source_count,
            watermark={"column": dataset.cursor,
                       "start": window_start.isoformat() if window_start else None,
                       "interval_start": since.isoformat() if since else None,
                       "end": self.end.isoformat(),
                       "overlap_seconds": int(opts.overlap.total_seconds())},
            mode=self.mode,
            schema_fingerprint=schema_fingerprint(self.schema),
            extra={
                "tombstones": tomb_count,
                **self.quarantine.manifest_values(),
                "future_cutoff": self.future.isoformat(),
                "source_fields": self.source_fields,
                "schema_drift": self.drift.to_dict(),
                "overlap_rows": self.overlap_rows,
                "full_reload": opts.reloads_fully(dataset),
                "delete_detection": self.delete_check,
                "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema],
                "dialect": dialect,
                "batch_size": opts.batch_size,
                "elapsed_seconds": round(elapsed, 3),
                "extracted_at": datetime.now(UTC).isoformat(),
            },
        ))


def _spot_check(s: Session, dataset: Dataset, key_sql: str, keys: list) -> None:
    """The source's hash of a few landed keys equals ``tally.lake.checksum``'s of the typed key."""
    for key in keys:
        value = s.scalar(f"SELECT {s.key_hash_sql(key_sql)} FROM {s.quote(dataset.name)} "  # noqa: S608
                         f"WHERE {key_sql} = {s.literal(key)}")
        if value is None or key_hash(key) != int(value) % MOD:
            raise RuntimeError(
                f"{dataset.dataset_id}: the source's key hash for {key!r} differs from tally.lake.checksum's "
                "(the key's text form differs between the database and Python); set "
                "TALLY_ERP_SOURCE_KEY_HASH=false to hash keys in Python"
            )
