"""``reconcile.<warehouse table>_current``: the latest landed version of every key.

The warehouse keeps every landed version of an ERP row (``raw.erp_<table>``, one ``_ds`` slice
per load), so "what the warehouse believes the source holds now" is the latest version per key
(greatest ``updated_at``, then greatest ``_ds``, as dbt's ``latest_version`` and Spark order
them), minus keys whose latest version is a tombstone. Computing that with ``DISTINCT ON`` over
the whole history is a sort of every version ever landed: too slow to do per reconciliation at
millions of rows. So the reconciliation keeps it as a table, one row per key
(key, ``updated_at``, ``_deleted``, ``_ds``), primary key on the key, and brings it up to date
itself before each comparison:

* **State**: ``reconcile.slices`` remembers, per table and ``_ds``, the ``_loaded_at`` of the
  slice it absorbed. The loader replaces a slice in one transaction, so every row of a slice
  carries the same ``_loaded_at``: a changed value means the slice was reloaded. Listing the
  slices is a skip scan of the ``_ds`` index (one probe per slice), not a table scan.
* **New slices** (the daily case): upsert the slice's latest version per key; a row replaces the
  current one only if it is newer (``(updated_at, _ds, _deleted)`` greater). Cost: one index
  range scan of the new slice.
* **Reloaded or removed slices** (a re-run ds, a heal): their versions may have gone, so keys
  whose current version came from them are deleted and recomputed from the full history (one
  scan of the current table and one of the raw table, hash-joined on those keys), then the
  reloaded slices are upserted as above.
* **First use, or more than ``MAX_STALE_SLICES`` reloaded slices**: rebuilt whole
  (``DISTINCT ON`` over the raw table, then the primary key).

The loader pays nothing for this (no trigger, no extra index on the raw tables). Both tables
are ``UNLOGGED``: they are derived, and a crash truncates both together, which reads as
"never built" and triggers a rebuild.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from tally.catalog import Dataset, snake_case
from tally.reconcile.full.sides import CURRENT_SCHEMA, current_table

MAX_STALE_SLICES = 8

# the bookkeeping table (package data: reconcile/full/sql/slices.sql)
STATE_DDL = resources.files("tally.reconcile.full").joinpath("sql", "slices.sql").read_text()


@dataclass
class Refresh:
    table: str
    mode: str  # "none" (raw table absent), "rebuild", "incremental", "unchanged"
    slices: int = 0  # slices in the raw table
    new_slices: list[str] | None = None
    reloaded_slices: list[str] | None = None
    keys: int = 0  # rows in the current table (the planner's estimate)
    frontier: str | None = None  # the newest _ds loaded
    seconds: float = 0.0


def _ids(dataset: Dataset) -> dict[str, sql.Composable]:
    return {"raw": sql.Identifier("raw", dataset.warehouse_table),
            "cur": sql.Identifier(CURRENT_SCHEMA, current_table(dataset)),
            "key": sql.Identifier(snake_case(dataset.key)),
            "v": sql.Identifier(snake_case(dataset.cursor))}


def _latest(ids: dict, where: sql.Composable) -> sql.Composed:
    return sql.SQL(
        "SELECT DISTINCT ON ({key}) {key}, {v}, coalesce(_deleted, false) AS _deleted, _ds FROM {raw} {where}"
        " ORDER BY {key}, {v} DESC NULLS LAST, _ds DESC, coalesce(_deleted, false) DESC").format(where=where, **ids)


def slices(conn: psycopg.Connection, dataset: Dataset) -> dict[str, object]:
    """``{ds: _loaded_at}`` of every slice in the raw table (a skip scan of the ``_ds`` index)."""
    raw = sql.Identifier("raw", dataset.warehouse_table)
    query = sql.SQL(
        "WITH RECURSIVE s(d) AS (SELECT min(_ds) FROM {raw}"
        " UNION ALL SELECT (SELECT min(_ds) FROM {raw} WHERE _ds > s.d) FROM s WHERE s.d IS NOT NULL)"
        " SELECT d::text, (SELECT _loaded_at FROM {raw} WHERE _ds = s.d LIMIT 1) FROM s WHERE d IS NOT NULL"
    ).format(raw=raw)
    return dict(conn.execute(query).fetchall())


def refresh(conn: psycopg.Connection, dataset: Dataset, *, force_rebuild: bool = False) -> Refresh:
    """Bring the current-version table of ``dataset`` up to date (one transaction)."""
    began = time.monotonic()
    ids = _ids(dataset)
    name = dataset.warehouse_table
    out = Refresh(name, "none")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"reconcile.{name}".encode()),))
        conn.execute(STATE_DDL)
        if conn.execute("SELECT to_regclass(%s)", (f'raw."{name}"',)).fetchone()[0] is None:
            return out
        conn.execute("SET LOCAL work_mem = '256MB'")
        now = slices(conn, dataset)
        out.slices = len(now)
        out.frontier = max(now) if now else None
        absorbed = dict(conn.execute("SELECT ds::text, loaded_at FROM reconcile.slices WHERE table_name = %s",
                                     (name,)).fetchall())
        exists = conn.execute("SELECT to_regclass(%s)", (f'{CURRENT_SCHEMA}."{current_table(dataset)}"',)
                              ).fetchone()[0] is not None
        new = sorted(d for d in now if d not in absorbed)
        reloaded = sorted(d for d in absorbed if d not in now or now[d] != absorbed[d])
        empty_but_absorbed = exists and absorbed and conn.execute(
            sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {cur})").format(**ids)).fetchone()[0]
        if force_rebuild or not exists or not absorbed or empty_but_absorbed or len(reloaded) > MAX_STALE_SLICES:
            out.mode = "rebuild"
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {cur}").format(**ids))
            conn.execute(sql.SQL("CREATE UNLOGGED TABLE {cur} AS {q}").format(q=_latest(ids, sql.SQL("")), **ids))
            conn.execute(sql.SQL("ALTER TABLE {cur} ADD PRIMARY KEY ({key})").format(**ids))
            conn.execute(sql.SQL("ANALYZE {cur}").format(**ids))
            conn.execute("DELETE FROM reconcile.slices WHERE table_name = %s", (name,))
            changed = sorted(now)
        elif new or reloaded:
            out.mode = "incremental"
            if reloaded:  # versions may have gone: recompute the keys whose current version came from them
                conn.execute("CREATE TEMP TABLE _reconcile_affected (k bigint) ON COMMIT DROP")
                conn.execute(sql.SQL(
                    "WITH gone AS (DELETE FROM {cur} WHERE _ds = ANY(%s::date[]) RETURNING {key})"
                    " INSERT INTO _reconcile_affected SELECT {key} FROM gone").format(**ids), (reloaded,))
                conn.execute("ANALYZE _reconcile_affected")
                conn.execute(sql.SQL("INSERT INTO {cur} {q}").format(
                    q=_latest(ids, sql.SQL("WHERE {key} IN (SELECT k FROM _reconcile_affected)").format(**ids)),
                    **ids))
            changed = sorted(set(new) | {d for d in reloaded if d in now})
            if changed:
                conn.execute(sql.SQL(
                    "INSERT INTO {cur} AS c {q} ON CONFLICT ({key}) DO UPDATE"
                    " SET {v} = EXCLUDED.{v}, _deleted = EXCLUDED._deleted, _ds = EXCLUDED._ds"
                    " WHERE (EXCLUDED.{v}, EXCLUDED._ds, EXCLUDED._deleted) > (c.{v}, c._ds, c._deleted)"
                ).format(q=_latest(ids, sql.SQL("WHERE _ds = ANY(%s::date[])")), **ids), (changed,))
            conn.execute("DELETE FROM reconcile.slices WHERE table_name = %s AND ds = ANY(%s::date[])",
                         (name, reloaded))
        else:
            out.mode = "unchanged"
            changed = []
        if changed:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO reconcile.slices (table_name, ds, loaded_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (table_name, ds) DO UPDATE SET loaded_at = EXCLUDED.loaded_at",
                    [(name, d, now[d]) for d in changed])
        out.new_slices, out.reloaded_slices = new, reloaded
        out.keys = int(conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
                                    (f'{CURRENT_SCHEMA}."{current_table(dataset)}"',)).fetchone()[0])
    out.seconds = round(time.monotonic() - began, 3)
    return out
