"""Legacy ERP extraction: one table, one data interval on ``updated_at``, streamed to the lake.

Rows are read through a server-side cursor in batches (constant memory). The source's count
for the interval is taken in the same REPEATABLE READ transaction as the rows, so the two
always describe the same snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg
from psycopg import sql

from tally.catalog import Dataset
from tally.config import PostgresConn
from tally.lake import Lake, arrow_schema
from tally.landing import batches_from_rows, interval_start, land


def _predicate(dataset: Dataset, start: datetime | None, end: datetime) -> tuple[sql.Composable, list]:
    cursor = sql.Identifier(dataset.cursor)
    if start is None:
        return sql.SQL("{} < %s").format(cursor), [end]
    return sql.SQL("{} >= %s AND {} < %s").format(cursor, cursor), [start, end]


def extract(conn_info: PostgresConn, lake: Lake, dataset: Dataset, ds: str, start: datetime, end: datetime,
            batch_size: int = 50_000) -> dict:
    since, mode = interval_start(lake, dataset, ds, start)
    where, params = _predicate(dataset, since, end)
    table = sql.Identifier(dataset.name)
    with psycopg.connect(conn_info.conninfo()) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            source_count = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, where), params
            ).fetchone()[0]
            query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in dataset.field_names), table, where,
                sql.Identifier(dataset.key),
            )

            def rows() -> Iterator[dict]:
                with conn.cursor(name=f"tally_{dataset.name}") as cur:
                    cur.itersize = batch_size
                    cur.execute(query, params)
                    names = dataset.field_names
                    for record in cur:
                        yield dict(zip(names, record, strict=True))

            return land(
                lake, dataset, ds, batches_from_rows(rows(), arrow_schema(dataset), batch_size),
                source_count=source_count,
                watermark={"column": dataset.cursor, "start": since.isoformat() if since else None,
                           "end": end.isoformat()},
                mode=mode,
            )
