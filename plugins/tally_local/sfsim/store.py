"""The simulator's data: one SQLite table per Salesforce object in ``tally.catalog.SALESFORCE``.

Columns are the catalog field names. Values are stored as Salesforce sends them over the wire:
datetimes as text ``2026-11-20T10:15:00.000+0000`` (UTC; text order is time order), dates as
``2026-11-20``, booleans as 0/1, money and doubles as REAL. The database runs in WAL mode so the
server can read while another process (the data generator) writes. Every call opens its own
short-lived connection, so one store object may be shared by threads and processes.

A file whose tables do not match the catalog (written by an older version) can still be opened:
every data call then raises ``RuntimeError`` until :meth:`SalesforceStore.reset` rebuilds it
(from this handle or from any other, even in another process).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import date, datetime
from decimal import Decimal
from itertools import groupby
from pathlib import Path

from tally.catalog import SALESFORCE, Dataset, Field
from tally_local.sfsim.faults import register_functions
from tally_local.sfsim.soql import SoqlQuery, format_datetime, parse_datetime, quote_ident

_SQL_TYPES = {"bool": "INTEGER", "int": "INTEGER", "decimal": "REAL", "double": "REAL"}


class SalesforceStore:
    """SQLite-backed Salesforce objects. Creates the schema on first use."""

    def __init__(self, path: str | Path, catalog: Mapping[str, Dataset] = SALESFORCE) -> None:
        self.path = Path(path)
        self.catalog = catalog
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._schema_error: str | None = None
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            self._create_schema(conn)

    def close(self) -> None:
        """Nothing to release (every call uses its own connection); kept for symmetry."""

    def __enter__(self) -> SalesforceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose ``with`` block is one transaction (commit, or rollback on error)."""
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.execute("PRAGMA synchronous=NORMAL")
            register_functions(conn)
            with conn:
                yield conn

    @contextmanager
    def _data(self) -> Iterator[sqlite3.Connection]:
        """A transaction for data access: raises while the file's tables mismatch the catalog."""
        with self._connect() as conn:
            if self._schema_error is not None:
                self._schema_error = self._mismatch(conn)  # someone may have reset() the file since
                if self._schema_error is not None:
                    raise RuntimeError(self._schema_error)
            yield conn

    def _mismatch(self, conn: sqlite3.Connection) -> str | None:
        for ds in self.catalog.values():
            existing = [row[1] for row in conn.execute(f"PRAGMA table_info({quote_ident(ds.name)})")]
            if existing != ds.field_names:
                return (
                    f"{self.path}: table {ds.name} has columns {existing}, the catalog says "
                    f"{ds.field_names}; call reset() (or delete the file) to rebuild it"
                )
        return None

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for ds in self.catalog.values():
            cols = ", ".join(
                f"{quote_ident(f.name)} {_SQL_TYPES.get(f.type, 'TEXT')}"
                + (" PRIMARY KEY" if f.name == ds.key else "")
                + ("" if f.nullable else " NOT NULL")
                for f in ds.fields
            )
            conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(ds.name)} ({cols})")
            existing = [row[1] for row in conn.execute(f"PRAGMA table_info({quote_ident(ds.name)})")]
            if existing != ds.field_names:
                continue  # an older layout: data calls raise until reset() (see _data)
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {quote_ident(f'ix_{ds.name}_{ds.cursor}')} "
                f"ON {quote_ident(ds.name)} ({quote_ident(ds.cursor)})"
            )
        self._schema_error = self._mismatch(conn)

    @property
    def schema_error(self) -> str | None:
        """Why data calls fail (tables from an older catalog), or None when the file is usable."""
        if self._schema_error is not None:
            with self._connect() as conn:
                self._schema_error = self._mismatch(conn)
        return self._schema_error

    def dataset(self, object_name: str) -> Dataset:
        try:
            return self.catalog[object_name]
        except KeyError:
            raise KeyError(
                f"unknown Salesforce object {object_name!r}; known: {list(self.catalog)}"
            ) from None

    def reset(self) -> None:
        """Drop and recreate every table (also picks up catalog changes)."""
        with self._connect() as conn:
            for ds in self.catalog.values():
                conn.execute(f"DROP TABLE IF EXISTS {quote_ident(ds.name)}")
            self._create_schema(conn)

    def upsert(self, object_name: str, records: Iterable[Mapping[str, object]]) -> int:
        """Insert or update records by key; return how many were written.

        A record may carry a subset of the fields: on update only those columns change, on insert
        the rest are null (non-nullable fields must then be present). Accepted values: ``datetime``
        (tz-aware) or ISO string with offset; ``date`` or ``YYYY-MM-DD``; ``Decimal``/float/int;
        ``bool``; ``str``; ``None``.
        """
        ds = self.dataset(object_name)
        types = {f.name: f for f in ds.fields}
        written = 0

        def encoded() -> Iterator[tuple[tuple[str, ...], tuple[object, ...]]]:
            for record in records:
                unknown = set(record) - types.keys()
                if unknown:
                    raise ValueError(f"{object_name}: unknown field(s) {sorted(unknown)}")
                if record.get(ds.key) is None:
                    raise ValueError(f"{object_name}: record without {ds.key}: {dict(record)!r}")
                cols = tuple(name for name in ds.field_names if name in record)
                yield cols, tuple(_encode(types[c], record[c]) for c in cols)

        with self._data() as conn:
            for cols, group in groupby(encoded(), key=lambda item: item[0]):
                rows = [values for _, values in group]
                table, key = quote_ident(ds.name), quote_ident(ds.key)
                names, marks = ", ".join(map(quote_ident, cols)), ", ".join("?" * len(cols))
                insert = f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({key}) "  # noqa: S608
                others = [i for i, c in enumerate(cols) if c != ds.key]
                if len(cols) == len(ds.fields):  # whole records: one upsert statement
                    updates = ", ".join(
                        f"{quote_ident(cols[i])} = excluded.{quote_ident(cols[i])}" for i in others
                    )
                    conn.executemany(insert + f"DO UPDATE SET {updates}", rows)
                else:  # partial records: NOT NULL is checked before ON CONFLICT, so update first
                    assignments = ", ".join(f"{quote_ident(cols[i])} = ?" for i in others)
                    update = f"UPDATE {table} SET {assignments} WHERE {key} = ?"  # noqa: S608
                    at_key = cols.index(ds.key)
                    for values in rows:
                        params = [values[i] for i in others] + [values[at_key]]
                        if not others or conn.execute(update, params).rowcount == 0:
                            conn.execute(insert + "DO NOTHING", values)
                written += len(rows)
        return written

    def count(self, object_name: str) -> int:
        """All rows of the object, deleted ones included."""
        ds = self.dataset(object_name)
        with self._data() as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {quote_ident(ds.name)}").fetchone()[0]  # noqa: S608

    def all(self, object_name: str) -> list[dict]:
        """Every row (deleted included) as Python values: datetime (UTC), date, Decimal, bool..."""
        ds = self.dataset(object_name)
        cols = ", ".join(map(quote_ident, ds.field_names))
        with self._data() as conn:
            rows = conn.execute(f"SELECT {cols} FROM {quote_ident(ds.name)} ORDER BY rowid").fetchall()  # noqa: S608
        return [{f.name: _decode(f, v) for f, v in zip(ds.fields, row, strict=True)} for row in rows]

    def query(self, query: SoqlQuery, *, include_deleted: bool) -> list[tuple[str, dict]]:
        """Rows matching a SOQL query as ``(key, record)`` with JSON-ready (wire) values.

        Runs as one statement, so the result is a consistent snapshot.
        """
        ds = query.dataset
        sql, params = query.to_sql(include_deleted=include_deleted, columns=(ds.key, *query.fields))
        types = [f for name in query.fields for f in ds.fields if f.name == name]
        with self._data() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [(row[0], {f.name: _wire(f, v) for f, v in zip(types, row[1:], strict=True)}) for row in rows]

    def count_query(self, query: SoqlQuery, *, include_deleted: bool) -> int:
        """The number of rows a query (usually ``SELECT COUNT()``) matches, LIMIT applied."""
        counting = SoqlQuery(query.dataset, (), query.where, query.params, (), query.limit)
        sql, params = counting.to_sql(include_deleted=include_deleted)
        with self._data() as conn:
            return conn.execute(sql, params).fetchone()[0]

    # --- targeted changes (the scenario helpers in tally_local.sfsim.scenarios use these) -----------

    def existing_ids(self, object_name: str, ids: Iterable[str]) -> set[str]:
        """The subset of ``ids`` that exist (deleted rows included)."""
        ds = self.dataset(object_name)
        found: set[str] = set()
        with self._data() as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                sql = (
                    f"SELECT {quote_ident(ds.key)} FROM {quote_ident(ds.name)} "  # noqa: S608
                    f"WHERE {quote_ident(ds.key)} IN ({', '.join('?' * len(chunk))})"
                )
                found.update(row[0] for row in conn.execute(sql, chunk))
        return found

    def update_fields(self, object_name: str, ids: Iterable[str], **values: object) -> int:
        """Set the same ``values`` on every record in ``ids`` in one transaction; return rows changed.

        Values are accepted as in :meth:`upsert`. Ids that do not exist are ignored (the count
        tells).
        """
        ds = self.dataset(object_name)
        types = {f.name: f for f in ds.fields}
        unknown = set(values) - types.keys()
        if unknown:
            raise ValueError(f"{object_name}: unknown field(s) {sorted(unknown)}")
        if ds.key in values:
            raise ValueError(f"{object_name}: update_fields cannot change the key {ds.key}")
        if not values:
            return 0
        names = list(values)
        encoded = [_encode(types[n], values[n]) for n in names]
        for n, v in zip(names, encoded, strict=True):
            if v is None and not types[n].nullable:
                raise ValueError(f"{object_name}: {n} cannot be null")
        assignments = ", ".join(f"{quote_ident(n)} = ?" for n in names)
        changed = 0
        with self._data() as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                sql = (
                    f"UPDATE {quote_ident(ds.name)} SET {assignments} "  # noqa: S608
                    f"WHERE {quote_ident(ds.key)} IN ({', '.join('?' * len(chunk))})"
                )
                changed += conn.execute(sql, [*encoded, *chunk]).rowcount
        return changed

    def delete_rows(self, object_name: str, ids: Iterable[str]) -> int:
        """Remove records physically (not a soft delete); return how many existed."""
        ds = self.dataset(object_name)
        removed = 0
        with self._data() as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                sql = (
                    f"DELETE FROM {quote_ident(ds.name)} "  # noqa: S608
                    f"WHERE {quote_ident(ds.key)} IN ({', '.join('?' * len(chunk))})"
                )
                removed += conn.execute(sql, chunk).rowcount
        return removed


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode(f: Field, value: object) -> object:
    """A Python value to its stored form; raises ``ValueError`` on a type mismatch."""
    if value is None:
        return None
    kind = f.type
    if kind == "datetime":
        if isinstance(value, str):
            value = parse_datetime(value)
        if isinstance(value, datetime):
            return format_datetime(value)
    elif kind == "date":
        if isinstance(value, str):
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
    elif kind == "bool":
        if isinstance(value, bool):
            return int(value)
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in ("decimal", "double"):
        if isinstance(value, int | float | Decimal | str) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(value, str):  # id, string
        return value
    raise ValueError(f"field {f.name} ({kind}): cannot store {value!r}")


def _wire(f: Field, value: object) -> object:
    """A stored value as the REST API's JSON carries it."""
    if value is None:
        return None
    if f.type == "bool":
        return bool(value)
    return value


def _decode(f: Field, value: object) -> object:
    """A stored value as a Python value."""
    if value is None:
        return None
    if f.type == "bool":
        return bool(value)
    if f.type == "datetime":
        return parse_datetime(str(value))
    if f.type == "date":
        return date.fromisoformat(str(value))
    if f.type == "decimal":
        return Decimal(repr(value))
    return value
