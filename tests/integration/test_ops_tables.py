"""ops.* tables are created safely when parallel tasks write to a new warehouse at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tally import ledger
from tally.core import pgutil
from tally.ledger import Entry

pytestmark = pytest.mark.integration


def test_parallel_first_writes_do_not_collide_in_the_catalog(warehouse_conn):
    pgutil._DONE.clear()  # as in separate task processes: nobody has created the tables yet

    def write(i: int) -> None:
        with psycopg.connect(warehouse_conn.conninfo()) as conn:
            ledger.record(conn, Entry("2026-01-01", f"d{i}", "raw", i, None, {}))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(6)))
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM ops.ledger").fetchone()[0] == 6
