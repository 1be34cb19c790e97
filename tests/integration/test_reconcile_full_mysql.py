"""Full reconciliation with a MariaDB ERP: the md5 hash flavour computed by both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from support.mariadb import fresh_mysql, mariadb  # noqa: F401  (the session's MariaDB server)

from tally import catalog, ledger
from tally.core.dates import ds_interval
from tally.load.warehouse import load_partition
from tally.reconcile.full import Options, reconcile_table
from tally.sources.erp.extract import ErpOptions, ErpSource
from tally_local.seed import ERP_DDL_MYSQL, mysql_connect

pytestmark = pytest.mark.integration

CUSTOMERS = catalog.ERP["customers"]
DS = "2026-04-29"
T0 = datetime(2026, 4, 29, 10, 0, 0, 250_000)  # DATETIME(6) in UTC


def _mysql(db, statement: str, params: tuple = ()) -> None:
    conn = mysql_connect(db, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def test_mariadb_source_is_compared_with_md5_and_healed(mariadb, lake, warehouse_conn):  # noqa: F811
    db = fresh_mysql(mariadb)
    _mysql(db, ERP_DDL_MYSQL[0])
    for i in range(1, 41):
        _mysql(db, "INSERT INTO customers VALUES (%s, %s, 'FR', NULL, %s, %s)",
               (i, f"client {i}", T0, T0 + timedelta(minutes=i, microseconds=i)))
    start, end = ds_interval(DS)
    ErpSource(db, ErpOptions(batch_size=8)).extract(lake, CUSTOMERS, DS, start, end)
    r = load_partition(warehouse_conn, lake, CUSTOMERS.lake_path, DS, "raw", CUSTOMERS.warehouse_table, CUSTOMERS.key)
    with psycopg.connect(warehouse_conn.conninfo(), autocommit=True) as conn:
        ledger.record(conn, ledger.Entry(DS, CUSTOMERS.dataset_id, "warehouse", r.row_count, r.key_checksum, {}))

    clean = reconcile_table(db, lake, warehouse_conn, CUSTOMERS, Options(heal=False))
    assert clean.flavour == "md5" and clean.found == {} and clean.source_rows == 40

    _mysql(db, "INSERT INTO customers VALUES (41, 'late', 'FR', NULL, %s, %s)", (T0, T0 + timedelta(hours=3)))
    _mysql(db, "UPDATE customers SET name = 'moved', updated_at = %s WHERE customer_id = 12",
           (T0 + timedelta(hours=2, microseconds=7),))
    _mysql(db, "DELETE FROM customers WHERE customer_id = 30")
    report = reconcile_table(db, lake, warehouse_conn, CUSTOMERS, Options(top_buckets=4, factor=2, leaf_rows=3))
    assert report.samples == {"missing": [41], "stale": [12], "extra": [30]}
    assert report.status == "healed" and report.left == {}
    landed = {row["customer_id"]: row for row in lake.read_table(CUSTOMERS.lake_path, DS).to_pylist()}
    assert landed[12]["name"] == "moved"
    assert landed[12]["updated_at"] == (T0 + timedelta(hours=2, microseconds=7)).replace(tzinfo=UTC)
    assert landed[30]["_deleted"] is True and landed[41]["name"] == "late"

    # A row without a key is outside every key range: counted in the source rows, reported.
    _mysql(db, "ALTER TABLE customers DROP PRIMARY KEY, MODIFY customer_id BIGINT NULL")
    _mysql(db, "INSERT INTO customers VALUES (NULL, 'keyless', 'FR', NULL, %s, %s)", (T0, T0))
    keyless = reconcile_table(db, lake, warehouse_conn, CUSTOMERS, Options(heal=False))
    assert keyless.found == {"null_key": 1} and keyless.null_key_rows == 1
    assert keyless.source_rows == 41 and keyless.status == "differences"
