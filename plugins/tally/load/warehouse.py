"""Load lake partitions into the warehouse: COPY, idempotent per (table, ds), one transaction.

Each warehouse table carries ``_ds`` (the logical date of the slice) and ``_loaded_at``.
Loading a ds deletes that ds's rows and COPYs the partition in the same transaction, so a
re-run replaces and a failure leaves the previous load intact. New nullable source columns
are added automatically; any other schema change fails with a message saying what changed.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from tally.catalog import snake_case
from tally.core.config import PostgresConn
from tally.core.pgutil import ensure_ddl
from tally.lake import Lake
from tally.lake.checksum import POSTGRES_HELPER_DDL, postgres_sql


class SchemaChangeError(RuntimeError):
    pass


def pg_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    raise SchemaChangeError(f"no warehouse type for Arrow type {t}")


@dataclass(frozen=True)
class LoadResult:
    table: str
    ds: str
    row_count: int
    key_checksum: str | None  # None: not measured (``load_partition(verify=False)``)


def ensure_ops(conn: psycopg.Connection) -> None:
    ensure_ddl(conn, "ops.to_hex_numeric", POSTGRES_HELPER_DDL)


def ensure_table(conn: psycopg.Connection, schema: str, table: str, arrow: pa.Schema) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"{schema}.{table}".encode()),))
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    wanted = {snake_case(f.name): pg_type(f.type) for f in arrow}
    existing = dict(conn.execute(
        "SELECT column_name, data_type || coalesce('(' || numeric_precision || ',' || numeric_scale || ')', '') "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    ).fetchall())
    target = sql.Identifier(schema, table)
    if not existing:
        cols = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in wanted.items()]
        cols += [sql.SQL("_ds date NOT NULL"), sql.SQL("_loaded_at timestamptz NOT NULL DEFAULT now()")]
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(cols)))
        conn.execute(sql.SQL("CREATE INDEX ON {} (_ds)").format(target))
        return
    changed = []
    for col, typ in wanted.items():
        have = existing.get(col)
        if have is None:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(target, sql.Identifier(col), sql.SQL(typ)))
        elif _normalise(have) != _normalise(typ):
            changed.append(f"{col}: warehouse {have}, incoming {typ}")
    if changed:
        raise SchemaChangeError(f"{schema}.{table} changed type: " + "; ".join(changed)
                                + ". Migrate the table deliberately; Tally will not rewrite history.")


def _normalise(pg: str) -> str:
    pg = pg.replace("(64,)", "").replace("(53,)", "").replace("(32,0)", "")
    return {"integer": "bigint", "text": "text", "double precision(53,)": "double precision",
            "bigint(64,0)": "bigint"}.get(pg, pg)


def load_partition(conn_info: PostgresConn, lake: Lake, dataset_path: str, ds: str, schema: str, table: str,
                   key: str, verify: bool = True) -> LoadResult:
    """Replace ``schema.table``'s rows for ``ds`` with the lake partition; returns what is there now
    (count and key checksum measured in SQL; with ``verify=False`` only the rows COPY took)."""
    target = sql.Identifier(schema, table)
    arrow = lake.schema(dataset_path, ds)
    cols = [snake_case(f.name) for f in arrow] + ["_ds"]
    copy_stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        target, sql.SQL(", ").join(map(sql.Identifier, cols)))
    with psycopg.connect(conn_info.conninfo()) as conn:
        ensure_ops(conn)  # in its own transaction: a failed load must not take the helper DDL with it
        with conn.transaction():
            ensure_table(conn, schema, table, arrow)
            conn.execute("SET LOCAL TimeZone TO 'UTC'")  # naive timestamp text below is UTC
            conn.execute(sql.SQL("DELETE FROM {} WHERE _ds = %s").format(target), (ds,))
            cur = conn.cursor()
            with cur.copy(copy_stmt) as copy:
                for batch in lake.iter_batches(dataset_path, ds):  # verified against the commit record
                    buf = io.BytesIO()
                    pacsv.write_csv(csv_ready(batch, ds), buf, pacsv.WriteOptions(include_header=False))
                    copy.write(buf.getvalue())
            if not verify:
                return LoadResult(f"{schema}.{table}", ds, cur.rowcount, None)
            return measure(conn, schema, table, snake_case(key), ds)


def csv_ready(batch: pa.RecordBatch, ds: str) -> pa.Table:
    """The batch plus ``_ds``, with time-zone-aware timestamps as naive UTC (the same instants:
    Arrow renders an aware timestamp through the zone database, 13x slower per value, and the
    loading session's TimeZone is UTC)."""
    columns = [col.cast(pa.timestamp(col.type.unit)) if pa.types.is_timestamp(col.type) and col.type.tz
               else col for col in batch.columns]
    if any(pa.types.is_timestamp(f.type) and f.type.tz not in (None, "UTC", "+00:00") for f in batch.schema):
        raise ValueError("the lake holds timestamps in UTC only")
    return pa.Table.from_arrays([*columns, pa.array([ds] * batch.num_rows, pa.string())],
                                names=[*batch.schema.names, "_ds"])


def measure(conn: psycopg.Connection, schema: str, table: str, key_column: str, ds: str,
            ds_column: str = "_ds") -> LoadResult:
    """Row count and key checksum of one ds slice, computed in the database."""
    key_sql = sql.Identifier(key_column).as_string(conn)
    query = sql.SQL("SELECT count(*), " + postgres_sql(key_sql, conn.info.server_version) + " FROM {} WHERE {} = %s").format(  # noqa: S608
        sql.Identifier(schema, table), sql.Identifier(ds_column))
    count, checksum = conn.execute(query, (ds,)).fetchone()
    return LoadResult(f"{schema}.{table}", ds, count, checksum)
