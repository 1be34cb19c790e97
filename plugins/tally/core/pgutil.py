"""Small Postgres helpers shared by the ledger, the gate log and the loader."""

from __future__ import annotations

import zlib

import psycopg

_DONE: set[tuple[str, str]] = set()


def ensure_ddl(conn: psycopg.Connection, name: str, ddl: str) -> None:
    """Run idempotent DDL once per process and database, serialised across processes.

    Parallel tasks running ``CREATE … IF NOT EXISTS`` at the same moment can still collide
    in Postgres's catalog (``pg_type_typname_nsp_index``); a transaction-scoped advisory lock
    makes them take turns.
    """
    key = (conn.info.dsn, name)
    if key in _DONE:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(name.encode()),))
        conn.execute(ddl)
    _DONE.add(key)
