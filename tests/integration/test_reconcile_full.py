"""Full reconciliation against real Postgres: the ERP source, a local lake, the warehouse.

Two ds are extracted and loaded the normal way; then the source changes behind the
extractor's back (a late commit with an old ``updated_at``, rows updated without the change
reaching the warehouse, hard deletes, a row that will not type) and one row changes after the
cutoff. The full reconciliation must find exactly those keys, heal them through the lake
(leaving the raw gate, the manifests, the ledger and the warehouse consistent) and find
nothing left afterwards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from tally import catalog, ledger
from tally.alerts.config import AlertConfig
from tally.core.config import PostgresConn
from tally.core.dates import ds_interval
from tally.core.errors import DataProblem
from tally.core.resources import Resources
from tally.gates.raw import gate_raw
from tally.lake.checksum import checksum
from tally.load import wap
from tally.load.warehouse import load_partition, measure
from tally.reconcile.full import Options, check, reconcile_table
from tally.reconcile.full.current import refresh
from tally.sources.erp.extract import ErpOptions, ErpSource
from tally.stages.extract import expected_raw_rows
from tally_local.seed import ERP_DDL

pytestmark = pytest.mark.integration

DS1, DS2 = "2026-04-29", "2026-04-30"
OPTIONS = ErpOptions(batch_size=4)
T0 = datetime(2026, 4, 29, 10, 0, tzinfo=UTC)
CUSTOMERS = catalog.ERP["customers"]
PAYMENTS = catalog.ERP["payments"]


@pytest.fixture
def erp_db(new_database) -> PostgresConn:
    db = new_database("erp")
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        conn.execute(ERP_DDL)
    return db


def _sql(db: PostgresConn, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(db.conninfo(), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _land(db, lake, warehouse, ds: str, datasets=(CUSTOMERS, PAYMENTS)) -> None:
    """Extract and load ``ds`` as tally_daily does (ledger included: an empty slice is loaded too)."""
    start, end = ds_interval(ds)
    for d in datasets:
        ErpSource(db, OPTIONS).extract(lake, d, ds, start, end)
        r = load_partition(warehouse, lake, d.lake_path, ds, "raw", d.warehouse_table, d.key)
        with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
            ledger.record(conn, ledger.Entry(ds, d.dataset_id, "warehouse", r.row_count, r.key_checksum, {}))


def _customer(i: int, at: datetime, name: str | None = None) -> tuple:
    return (i, name or f"customer {i}", "DE", None, T0, at)


def _latest(warehouse: PostgresConn, d) -> dict[int, tuple]:
    """The warehouse's latest version per key, computed the slow way (dbt's ordering)."""
    key = sql.Identifier(d.key)
    query = sql.SQL("SELECT DISTINCT ON ({k}) {k}, updated_at, coalesce(_deleted, false) FROM {t}"
                    " ORDER BY {k}, updated_at DESC, _ds DESC").format(k=key, t=sql.Identifier("raw", d.warehouse_table))
    return {k: (v, dead) for k, v, dead in _sql(warehouse, query.as_string())}


def test_finds_exactly_the_injected_keys_heals_them_and_leaves_everything_consistent(erp_db, lake, warehouse_conn):
    ins_c = "INSERT INTO customers (customer_id, name, country, sf_account_ref, created_at, updated_at) " \
            "VALUES (%s, %s, %s, %s, %s, %s)"
    ins_p = "INSERT INTO payments (payment_id, invoice_id, payment_date, method, amount, currency, created_at," \
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    for i in range(1, 21):
        _sql(erp_db, ins_c, _customer(i, T0 + timedelta(minutes=i)))
    for i in range(1, 6):
        _sql(erp_db, ins_p, (i, 100 + i, T0.date(), "card", f"{i}.50", "EUR", T0, T0 + timedelta(minutes=i)))
    _land(erp_db, lake, warehouse_conn, DS1)
    for i, at in ((3, "2026-04-30 09:00+00"), (5, "2026-04-30 10:00+00")):  # changed on ds2: land in ds2
        _sql(erp_db, "UPDATE customers SET name = name || ' v2', updated_at = %s WHERE customer_id = %s", (at, i))
    _land(erp_db, lake, warehouse_conn, DS2)

    # Behind the extractor's back:
    _sql(erp_db, ins_c, _customer(21, T0 + timedelta(hours=2)))  # committed late with an old updated_at
    _sql(erp_db, "UPDATE customers SET name = 'renamed', updated_at = %s WHERE customer_id = 7",
         (T0 + timedelta(hours=1),))  # stale; its warehouse version is in ds1
    _sql(erp_db, "UPDATE customers SET name = 'v3', updated_at = '2026-04-30 11:00+00' WHERE customer_id = 5")
    _sql(erp_db, "DELETE FROM customers WHERE customer_id IN (3, 9)")  # 3's latest version is in ds2
    _sql(erp_db, "UPDATE customers SET name = 'later', updated_at = '2026-05-01 08:00+00' WHERE customer_id = 11")
    _sql(erp_db, ins_p, (6, 106, T0.date(), "card", "twelve", "EUR", T0, T0 + timedelta(hours=2)))  # will not type
    _sql(erp_db, ins_p, (7, 107, T0.date(), "wire", "7.25", "EUR", T0, T0 + timedelta(hours=2)))
    source_customers = {k: v for k, v in _sql(erp_db, "SELECT customer_id, updated_at FROM customers")}

    report = reconcile_table(erp_db, lake, warehouse_conn, CUSTOMERS, Options(leaf_rows=4, top_buckets=4, factor=2))
    assert report.frontier == DS2 and report.cutoff == "2026-05-01T00:00:00+00:00"
    assert report.flavour == "pg"
    assert report.found == {"missing": 1, "stale": 2, "extra": 2, "in_flight": 1}
    assert report.samples == {"missing": [21], "stale": [5, 7], "extra": [3, 9], "in_flight": [11]}
    assert report.stats["diff"]["levels"] >= 2  # bisected, not listed whole
    assert report.status == "healed" and report.left == {}
    assert report.healed == {"missing": 1, "extra": 2, "stale": 2}
    heal = report.heal
    assert (heal["rows"], heal["tombstones"], heal["quarantined"]) == (3, 2, 0)
    assert heal["replaced"] == 2  # 5 and 3 were already in ds2: rewritten, not duplicated

    # The warehouse now holds the source's state (customer 11 is in flight: tomorrow's run).
    latest = _latest(warehouse_conn, CUSTOMERS)
    for key, version in source_customers.items():
        if key != 11:
            assert latest[key] == (version, False), key
    assert latest[3][1] is True and latest[9][1] is True
    assert latest[11][0] < source_customers[11]

    # The lake partition, its manifest, the raw gate, the warehouse slice and the ledger agree.
    m = lake.read_manifest(CUSTOMERS.lake_path, DS2)
    part = lake.read_table(CUSTOMERS.lake_path, DS2)
    keys = part.column("customer_id").to_pylist()
    assert len(keys) == len(set(keys)) == m["row_count"] == expected_raw_rows(m)
    assert m["key_checksum"] == checksum(keys)
    assert len(m["heals"]) == 1 and m["heals"][0]["before"]["row_count"] == 2
    res = Resources(lake=lake, warehouse=warehouse_conn, erp=erp_db)
    gate_raw(res, DS2, [CUSTOMERS.dataset_id])  # raises DataProblem if the heal broke it
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        got = measure(conn, "raw", CUSTOMERS.warehouse_table, "customer_id", DS2)
        hops = ledger.flow(conn, DS2)[CUSTOMERS.dataset_id]
    assert (got.row_count, got.key_checksum) == (m["row_count"], m["key_checksum"])
    assert (hops["raw"].row_count, hops["raw"].key_checksum) == (m["row_count"], m["key_checksum"])
    assert hops["warehouse"].key_checksum == m["key_checksum"] and hops["source"].row_count == m["row_count"]
    assert ledger.first_divergence(hops) is None
    # Written, audited and published the write–audit–publish way: staged, checked, swapped in.
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        pub = wap.last_publication(conn, DS2)
        staged_left = conn.execute(f"SELECT count(*) FROM wap_raw.{CUSTOMERS.warehouse_table}").fetchone()[0]
    assert pub["run_id"].startswith("heal:") and pub["tables"] == [f"raw.{CUSTOMERS.warehouse_table}"]
    assert pub["rows"] == m["row_count"] and staged_left == 0

    # Tomorrow's extract sees the healed keys as landed: no second tombstone for 3 and 9.
    start3, end3 = ds_interval("2026-05-01")
    m3 = ErpSource(erp_db, OPTIONS).extract(lake, CUSTOMERS, "2026-05-01", start3, end3)
    assert m3["tombstones"] == 0

    # Payments: the late row is healed; the one that does not type is quarantined, and counted
    # as accounted for (not left, not quarantined again) by the next comparison.
    pay = reconcile_table(erp_db, lake, warehouse_conn, PAYMENTS)
    assert pay.found == {"missing": 2} and pay.samples["missing"] == [6, 7]
    assert pay.heal["rows"] == 1 and pay.heal["quarantined"] == 1 and pay.left == {}
    q = lake.read_table("quarantine/erp/payments", DS2).to_pylist()
    assert [(r["payment_id"], r["reason"]) for r in q] == [("6", "amount: not a decimal")]
    pm = lake.read_manifest(PAYMENTS.lake_path, DS2)
    assert pm["row_count"] == expected_raw_rows(pm) and pm["quarantined"] == 1
    again = reconcile_table(erp_db, lake, warehouse_conn, PAYMENTS)
    assert again.found == {"quarantined": 1} and again.status == "ok" and again.heal is None

    # The current-version table kept incrementally equals one rebuilt from scratch.
    with psycopg.connect(warehouse_conn.conninfo(), autocommit=True) as conn:
        kept = conn.execute("SELECT * FROM reconcile.erp_customers_current ORDER BY 1").fetchall()
        assert refresh(conn, CUSTOMERS, force_rebuild=True).mode == "rebuild"
        assert conn.execute("SELECT * FROM reconcile.erp_customers_current ORDER BY 1").fetchall() == kept

    # The check: one result per table in ops.validation_results, one alert (per DAG, ds and
    # check) with the counts, and no failure since nothing is left.
    reports = [report.to_dict(), pay.to_dict()]
    no_channels = AlertConfig()
    out = check(res, "2026-05-01", reports, alert_config=no_channels)
    assert "erp.customers: 1 missing, 2 extra, 2 stale (0 left)" in out["summary"]
    check(res, "2026-05-01", reports, alert_config=no_channels)  # a re-run: no second alert
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        alerts = conn.execute("SELECT gate, title, occurrences FROM ops.alerts WHERE dag_id = 'tally_reconcile'"
                              ).fetchall()
        stored = conn.execute("SELECT suite, success, failed FROM ops.validation_results WHERE hop = 'reconcile'"
                              " ORDER BY id LIMIT 2").fetchall()
    assert len(alerts) == 1 and alerts[0][0] == "check" and alerts[0][2] == 2
    assert "7 key(s) differed" in alerts[0][1] and "7 healed, 0 left" in alerts[0][1]
    assert stored == [("reconcile.erp.customers", False, 3), ("reconcile.erp.payments", False, 1)]


def test_without_heal_differences_are_left_and_the_check_fails(erp_db, lake, warehouse_conn):
    for i in range(1, 6):
        _sql(erp_db, "INSERT INTO customers VALUES (%s, %s, 'DE', NULL, %s, %s)",
             (i, f"c{i}", T0, T0 + timedelta(minutes=i)))
    _land(erp_db, lake, warehouse_conn, DS1, (CUSTOMERS,))
    _sql(erp_db, "DELETE FROM customers WHERE customer_id = 2")
    report = reconcile_table(erp_db, lake, warehouse_conn, CUSTOMERS, Options(heal=False))
    assert report.found == {"extra": 1} and report.left == {"extra": 1} and report.status == "differences"
    assert lake.read_manifest(CUSTOMERS.lake_path, DS1).get("heals") is None  # nothing written
    res = Resources(lake=lake, warehouse=warehouse_conn, erp=erp_db)
    with pytest.raises(DataProblem, match=r"erp.customers: 1 extra \(1 left\)"):
        check(res, DS2, [report.to_dict()], alert_config=AlertConfig())


def test_null_key_rows_are_in_the_source_count_and_reported(erp_db, lake, warehouse_conn):
    """Rows with a NULL key are outside every key range of the comparison: they are counted in
    the source rows all the same, and reported as ``null_key`` (they can never land)."""
    for i in range(1, 6):
        _sql(erp_db, "INSERT INTO customers VALUES (%s, %s, 'DE', NULL, %s, %s)",
             (i, f"c{i}", T0, T0 + timedelta(minutes=i)))
    _land(erp_db, lake, warehouse_conn, DS1, (CUSTOMERS,))
    _sql(erp_db, "ALTER TABLE customers DROP CONSTRAINT customers_pkey CASCADE")
    _sql(erp_db, "ALTER TABLE customers ALTER COLUMN customer_id DROP NOT NULL")
    for name in ("keyless 1", "keyless 2"):
        _sql(erp_db, "INSERT INTO customers VALUES (NULL, %s, 'DE', NULL, %s, %s)", (name, T0, T0))
    report = reconcile_table(erp_db, lake, warehouse_conn, CUSTOMERS)
    assert report.source_rows == 7 and report.null_key_rows == 2 and report.warehouse_rows == 5
    assert report.found == {"null_key": 2} and report.left == {"null_key": 2}
    assert report.status == "differences" and report.heal is None
    assert any("2 source row(s) with a NULL customer_id" in n for n in report.notes)
    res = Resources(lake=lake, warehouse=warehouse_conn, erp=erp_db)
    with pytest.raises(DataProblem, match=r"erp.customers: 2 null_key \(2 left\)"):
        check(res, DS2, [report.to_dict()], alert_config=AlertConfig())


def test_cli_full_reconcile_reports_each_table(stack, erp_db, lake, warehouse_conn, monkeypatch):
    from typer.testing import CliRunner

    from tally.cli import app, common

    class Isolated:  # the session stack's profile, but this test's own ERP, lake and warehouse
        @staticmethod
        def resources():
            res = stack.resources()
            res.erp, res.lake, res.warehouse = erp_db, lake, warehouse_conn
            return res

    monkeypatch.setattr(common, "require_profile", lambda: Isolated)
    runner = CliRunner()
    result = runner.invoke(app, ["reconcile", "--full", "--no-heal", "--table", "customers"])
    assert result.exit_code == 0, result.output
    assert "erp.customers: raw.erp_customers holds no slice yet" in result.output
    _sql(erp_db, "INSERT INTO customers VALUES (%s, %s, %s, %s, %s, %s)", _customer(1, T0))
    _land(erp_db, lake, warehouse_conn, DS1, datasets=(CUSTOMERS,))
    _sql(erp_db, "DELETE FROM customers WHERE customer_id = 1")  # gone at the source, live in the warehouse
    result = runner.invoke(app, ["reconcile", "--full", "--no-heal", "--table", "customers"])
    assert result.exit_code == 1, result.output  # a difference is left
    assert "erp.customers extra: 1" in result.output
    bad = runner.invoke(app, ["reconcile", "--full", "--table", "salesforce.Account"])
    assert bad.exit_code == 2 and "ERP tables only" in bad.output
