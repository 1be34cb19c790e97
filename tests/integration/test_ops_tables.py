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


def test_ddl_rolled_back_with_its_callers_transaction_is_run_again(warehouse_conn):
    """A load that fails rolls back the helper DDL it ran inside its transaction; the next call in
    the same process must create it again (it used to be remembered as done: every later load
    failed with 'schema does not exist')."""
    ddl = "CREATE SCHEMA IF NOT EXISTS ddl_probe; CREATE TABLE IF NOT EXISTS ddl_probe.t (x int)"
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            pgutil.ensure_ddl(conn, "ddl_probe", ddl)
            raise RuntimeError("the load failed")
        pgutil.ensure_ddl(conn, "ddl_probe", ddl)
        conn.commit()
        assert conn.execute("SELECT to_regclass('ddl_probe.t') IS NOT NULL").fetchone()[0]
