"""Which keys were lost between two hops: the lake partition vs the warehouse slice, and the
curated rankings vs the mart. Used by `tally reconcile` to show on-call sample keys."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from tally import catalog
from tally.core.config import PostgresConn
from tally.lake import Lake


@dataclass(frozen=True)
class KeyDiff:
    dataset: str
    left: str
    right: str
    missing: list[str]  # in left, not in right (sample)
    extra: list[str]  # in right, not in left (sample)
    missing_count: int
    extra_count: int


def _lake_keys(lake: Lake, path: str, ds: str, key: str) -> set[str]:
    if lake.read_manifest(path, ds) is None:
        return set()
    return {str(k) for k in lake.read_table(path, ds, columns=[key]).column(key).to_pylist()}


def _table_keys(conn: psycopg.Connection, schema: str, table: str, key: str, ds_column: str, ds: str) -> set[str]:
    if conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()[0] is None:
        return set()
    query = sql.SQL("SELECT {}::text FROM {} WHERE {} = %s AND {} IS NOT NULL").format(
        sql.Identifier(key), sql.Identifier(schema, table), sql.Identifier(ds_column), sql.Identifier(key))
    return {r[0] for r in conn.execute(query, (ds,))}


def _diff(dataset: str, left: str, right: str, a: set[str], b: set[str], sample: int) -> KeyDiff:
    missing, extra = sorted(a - b), sorted(b - a)
    return KeyDiff(dataset, left, right, missing[:sample], extra[:sample], len(missing), len(extra))


def key_diff(lake: Lake, warehouse: PostgresConn, dataset: str, ds: str, sample: int = 10) -> KeyDiff | None:
    """Lake vs warehouse keys for a raw or curated dataset; a curated dataset a mart carries
    (``tally.gates.mart.MART_LEDGER``) also warehouse vs mart. The warehouse slice is the one the
    ledger's warehouse hop measured: the staged one while the ds waits to be published
    (``tally.load.wap``), else the published one."""
    from tally.contract import MART_SCHEMA
    from tally.gates.mart import MART_LEDGER
    from tally.load import wap

    with psycopg.connect(warehouse.conninfo()) as conn:
        staged = wap.staged(conn, ds) is not None

        def schema(name: str) -> str:
            return wap.staging_schema(name) if staged else name

        if dataset in catalog.CURATED_KEYS:
            key = catalog.CURATED_KEYS[dataset]
            lake_keys = _lake_keys(lake, f"curated/{dataset}", ds, key)
            wh = _table_keys(conn, schema("curated"), dataset, key, "_ds", ds)
            first = _diff(dataset, "curated", "warehouse", lake_keys, wh, sample)
            carried = next(((mart, mart_key) for name, mart, mart_key in MART_LEDGER if name == dataset), None)
            if (first.missing_count or first.extra_count) or carried is None:
                return first
            mart = _table_keys(conn, MART_SCHEMA, carried[0], carried[1], "ds", ds)
            return _diff(dataset, "warehouse", "mart", wh, mart, sample)
        d = catalog.get(dataset)
        lake_keys = _lake_keys(lake, d.lake_path, ds, d.key)
        wh = _table_keys(conn, schema("raw"), d.warehouse_table, catalog.snake_case(d.key), "_ds", ds)
        return _diff(dataset, "raw", "warehouse", lake_keys, wh, sample)
