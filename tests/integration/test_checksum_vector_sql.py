"""The SQL forms of the key checksum (tally.lake.checksum) on real servers, against the shared test
vector (tests/support/checksum_vector.json): Postgres (both hash forms) and MariaDB."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from support.mariadb import fresh_mysql, mariadb  # noqa: F401  (the session's MariaDB server)

from tally.lake.checksum import POSTGRES_HELPER_DDL, mysql_sql, postgres_sql
from tally_local.seed import mysql_connect

pytestmark = pytest.mark.integration

VECTOR = json.loads((Path(__file__).parents[1] / "support" / "checksum_vector.json").read_text())["cases"]
SQL_TYPES = {"string": "text", "int": "bigint"}


def test_postgres_forms(new_database):
    with psycopg.connect(new_database("chk").conninfo(), autocommit=True) as conn:
        conn.execute(POSTGRES_HELPER_DDL)
        for case in VECTOR:
            conn.execute("DROP TABLE IF EXISTS vector_keys")
            conn.execute(sql.SQL("CREATE TABLE vector_keys (k {})").format(sql.SQL(SQL_TYPES[case["type"]])))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO vector_keys VALUES (%s)", [(k,) for k in case["keys"]])
            for version in {0, conn.info.server_version}:  # the bit(64) form, and the server's own
                got = conn.execute(f"SELECT {postgres_sql('k', version)} FROM vector_keys").fetchone()[0]  # noqa: S608
                assert got == case["checksum"], (case["name"], version)


def test_mysql_form(mariadb):  # noqa: F811
    db = fresh_mysql(mariadb)
    conn = mysql_connect(db, autocommit=True)
    try:
        with conn.cursor() as cur:
            for case in VECTOR:
                cur.execute("DROP TABLE IF EXISTS vector_keys")
                kind = "VARCHAR(64) CHARACTER SET utf8mb4" if case["type"] == "string" else "BIGINT"
                cur.execute(f"CREATE TABLE vector_keys (k {kind})")
                if case["keys"]:
                    cur.executemany("INSERT INTO vector_keys VALUES (%s)", [(k,) for k in case["keys"]])
                cur.execute(f"SELECT {mysql_sql('`k`')} FROM vector_keys")  # noqa: S608
                assert cur.fetchone()[0] == case["checksum"], case["name"]
    finally:
        conn.close()
