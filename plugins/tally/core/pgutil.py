"""Small Postgres helpers shared by the ledger, the gate log and the loader."""

from __future__ import annotations

import zlib

import psycopg

_DONE: set[tuple[str, str]] = set()


def ensure_ddl(conn: psycopg.Connection, name: str, ddl: str) -> None:
    """Run idempotent DDL once per process and database, serialised across processes.

    Call it outside a transaction where you can: inside one, the advisory lock is held until the
    caller's transaction ends, and the DDL is run again by the next call.

    Parallel tasks running ``CREATE … IF NOT EXISTS`` at the same moment can still collide
    in Postgres's catalog (``pg_type_typname_nsp_index``); a transaction-scoped advisory lock
    makes them take turns.
    """
    key = (conn.info.dsn, name)
    if key in _DONE:
        return
    # Inside a caller's transaction the DDL commits only if that transaction does: remembered
    # only when it ran in a transaction of its own (a rolled-back load must not leave it "done").
    own = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(name.encode()),))
        conn.execute(ddl)
    if own:
        _DONE.add(key)
