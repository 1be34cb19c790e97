"""The ERP extractor streams: its Python memory does not grow with the number of rows.

300,000 order lines (made by Postgres itself with ``generate_series``) are extracted with a
small batch size under ``tracemalloc``; so are 30,000. The peak of Python allocations (row
blocks, numpy buffers, batches in flight) must stay under a fixed bound for both, and the
tenfold larger table must not need materially more. No timing assertions.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from tally import catalog
from tally.core.config import PostgresConn
from tally.sources.erp.extract import ErpOptions, ErpSource
from tally_local.seed import ERP_DDL

pytestmark = pytest.mark.integration

END = datetime(2026, 7, 1, tzinfo=UTC)
BOUND = 8 * 2**20  # bytes of Python allocations at peak, whatever the row count


@pytest.fixture(scope="module")
def big_erp(new_database) -> PostgresConn:
    erp_conn = new_database("erp_mem")
    with psycopg.connect(erp_conn.conninfo(), autocommit=True) as conn:
        conn.execute(ERP_DDL)
        for table, rows in (("order_lines", 300_000), ("order_lines_small", 30_000)):
            if table != "order_lines":
                conn.execute(sql.SQL("CREATE TABLE {} (LIKE order_lines INCLUDING ALL)").format(sql.Identifier(table)))
            conn.execute(sql.SQL(
                "INSERT INTO {} SELECT g, 500000 + g / 3, 1 + g % 3, 1000 + g % 400, 1 + g % 7,"
                " round(1 + (g % 90000) / 100.0, 2), 0, round(1 + (g % 90000) / 100.0, 2) * (1 + g % 7),"
                " timestamptz '2026-01-01' + g * interval '1 second', timestamptz '2026-01-01' + g * interval '1 second'"
                " FROM generate_series(1, {}) AS g").format(sql.Identifier(table), sql.Literal(rows)))
    return erp_conn


def _peak(conn: PostgresConn, lake, table: str) -> tuple[int, dict]:
    dataset = replace(catalog.ERP["order_lines"], name=table)
    tracemalloc.start()
    try:
        manifest = ErpSource(conn, ErpOptions(batch_size=2_000)).extract(
            lake, dataset, "2026-06-30", datetime(2026, 6, 30, tzinfo=UTC), END)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, manifest


def test_memory_stays_flat_in_the_row_count(big_erp, lake):
    _peak(big_erp, lake, "order_lines_small")  # warm-up: one-time imports are not the extractor's memory
    small_peak, small = _peak(big_erp, lake, "order_lines_small")
    big_peak, big = _peak(big_erp, lake, "order_lines")
    print(f"peak small={small_peak / 2**20:.1f} MiB big={big_peak / 2**20:.1f} MiB")
    assert (small["row_count"], big["row_count"]) == (30_000, 300_000)
    assert small_peak < BOUND and big_peak < BOUND, (small_peak, big_peak)
    assert big_peak < small_peak * 1.5 + 2 * 2**20, (small_peak, big_peak)
