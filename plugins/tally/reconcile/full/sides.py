"""The two sides of a full reconciliation, as SQL pushed down into each database.

**Source**: the ERP table's current rows (Postgres, or MySQL/MariaDB through the same
``tally.sources.erp.dialect`` session: one read-only REPEATABLE READ snapshot for the whole comparison).

**Warehouse**: ``reconcile.erp_<table>_current`` (see :mod:`tally.reconcile.full.current`),
one row per key with the latest landed version and whether it is a tombstone. Tombstones are
left out of the checksums (the source no longer has those keys) but listed at the leaves, so a
key that is missing behind a tombstone can be told apart from one never landed.

**Hash of (key, version)**, summed per bucket: two flavours, chosen so that both sides compute
exactly the same 64-bit value per row.

* ``pg``, when both sides are Postgres: ``hashint8extended(key, timestamptz_hash_extended(v, 0))``,
  Postgres's own 64-bit hash functions on the binary values (no text, no md5): about five
  times cheaper than md5 per row. Both functions hash the integer value arithmetically, so two
  servers of any platform agree.
* ``md5``, when the source is MySQL/MariaDB: the first 16 hex digits of
  ``md5(key || ':' || microseconds since the epoch)``, which both dialects compute natively.

The version compared is ``updated_at`` to the microsecond, in UTC. Keys must be integers (all
ERP keys are): buckets are ranges of key values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from tally.catalog import Dataset, snake_case
from tally.lake.checksum import MOD
from tally.reconcile.full.bisect import ABSENT
from tally.sources.erp.dialect import Session

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CURRENT_SCHEMA = "reconcile"


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch (the version as both sides render it)."""
    return (moment - EPOCH) // _US


_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH


def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + us * _US


def current_table(dataset: Dataset) -> str:
    return f"{dataset.warehouse_table}_current"


def pg_has_fast_hash(conn) -> bool:
    return conn.execute(
        "SELECT to_regprocedure('timestamptz_hash_extended(timestamptz, bigint)') IS NOT NULL"
        " AND to_regprocedure('hashint8extended(bigint, bigint)') IS NOT NULL").fetchone()[0]


def _pg_hash(flavour: str, key: str, version: str) -> str:
    if flavour == "pg":
        return f"hashint8extended({key}, timestamptz_hash_extended({version}, 0))"
    us = f"(extract(epoch FROM {version}) * 1000000)::bigint"
    return f"('x' || substr(md5(({key})::text || ':' || ({us})::text), 1, 16))::bit(64)::bigint"


def _pg_us(version: str) -> str:
    return f"(extract(epoch FROM {version}) * 1000000)::bigint"


class SourceSide:
    """The ERP table in one ``tally.sources.erp.dialect`` session (Postgres or MySQL/MariaDB)."""

    def __init__(self, session: Session, dataset: Dataset, flavour: str, timezone: str = "UTC") -> None:
        self.s = session
        self.dataset = dataset
        self.flavour = flavour
        self.table = session.quote(dataset.name)
        self.key = session.quote(dataset.key)
        cursor = session.quote(dataset.cursor)
        if session.name == "mysql":
            if flavour != "md5":
                raise ValueError("a MySQL source is compared with the md5 flavour")
            self.us = f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', CONVERT_TZ({cursor}, @@session.time_zone, '+00:00'))"
            self.hash = (f"CAST(CONV(SUBSTRING(MD5(CONCAT({self.key}, ':', {self.us})), 1, 16), 16, 10) AS UNSIGNED)")
            self.div = "DIV"
        else:
            version = cursor
            if self._pg_type(dataset.cursor) == "timestamp without time zone":  # wall-clock time in the source's zone
                version = f"({cursor} AT TIME ZONE {session.literal(timezone)})"
            self.us = _pg_us(version)
            self.hash = _pg_hash(flavour, self.key, version)
            self.div = "/"

    def _pg_type(self, column: str) -> str | None:
        row = self.s.conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = %s"
            " AND table_schema = ANY(current_schemas(false)) LIMIT 1", (self.dataset.name, column)).fetchone()
        return row[0] if row else None

    def _all(self, query: str) -> list[tuple]:
        if self.s.name == "mysql":
            with self.s.conn.cursor() as cur:
                cur.execute(query)
                return list(cur.fetchall())
        return self.s.conn.execute(query).fetchall()

    def bounds(self) -> tuple[int, int] | None:
        lo, hi = self._all(f"SELECT min({self.key}), max({self.key}) FROM {self.table}")[0]  # noqa: S608
        return None if lo is None else (int(lo), int(hi))

    def null_keys(self) -> int:
        """Rows without a key: outside every key range, so the checksums never see them."""
        return int(self._all(f"SELECT count(*) FROM {self.table} WHERE {self.key} IS NULL")[0][0])  # noqa: S608

    def checksums(self, lo: int, hi: int, width: int) -> dict[int, tuple[int, int]]:
        query = (f"SELECT ({self.key} - {int(lo)}) {self.div} {int(width)}, count(*), sum({self.hash})"  # noqa: S608
                 f" FROM {self.table} WHERE {self.key} >= {int(lo)} AND {self.key} < {int(hi)} GROUP BY 1")
        return {int(b): (int(c), int(h or 0) % MOD) for b, c, h in self._all(query)}

    def rows(self, lo: int, hi: int) -> dict[int, Any]:
        query = (f"SELECT {self.key}, {self.us} FROM {self.table}"  # noqa: S608
                 f" WHERE {self.key} >= {int(lo)} AND {self.key} < {int(hi)}")
        return {int(k): (None if v is None else int(v),) for k, v in self._all(query)}

    def version(self, row: Any) -> Any:
        return row[0]


class WarehouseSide:
    """``reconcile.<table>_current`` in the warehouse: rows are (version_us, deleted, ds)."""

    def __init__(self, conn, dataset: Dataset, flavour: str) -> None:
        self.conn = conn
        key = snake_case(dataset.key)
        cursor = snake_case(dataset.cursor)
        self.key = sql.Identifier(key).as_string(conn)
        version = sql.Identifier(cursor).as_string(conn)
        self.table = sql.Identifier(CURRENT_SCHEMA, current_table(dataset)).as_string(conn)
        self.hash = _pg_hash(flavour, self.key, version)
        self.us = _pg_us(version)

    def bounds(self) -> tuple[int, int] | None:
        lo, hi = self.conn.execute(f"SELECT min({self.key}), max({self.key}) FROM {self.table}").fetchone()  # noqa: S608
        return None if lo is None else (int(lo), int(hi))

    def checksums(self, lo: int, hi: int, width: int) -> dict[int, tuple[int, int]]:
        query = (f"SELECT ({self.key} - %s) / %s, count(*), sum({self.hash}) FROM {self.table}"  # noqa: S608
                 f" WHERE {self.key} >= %s AND {self.key} < %s AND NOT _deleted GROUP BY 1")
        rows = self.conn.execute(query, (lo, width, lo, hi)).fetchall()
        return {int(b): (int(c), int(h or 0) % MOD) for b, c, h in rows}

    def rows(self, lo: int, hi: int) -> dict[int, Any]:
        query = (f"SELECT {self.key}, {self.us}, _deleted, _ds::text FROM {self.table}"  # noqa: S608
                 f" WHERE {self.key} >= %s AND {self.key} < %s")
        return {int(k): (int(v), bool(d), ds) for k, v, d, ds in self.conn.execute(query, (lo, hi))}

    def version(self, row: Any) -> Any:
        return ABSENT if row[1] else row[0]
