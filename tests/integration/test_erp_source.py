"""The ERP extractor against real databases: embedded Postgres and a MariaDB server started here.

The same scenario runs on both dialects: a full first ds, then a ds in which one order line was
hard-deleted, one payment was updated with an ``updated_at`` inside the overlap window (it
committed late), and one order line went bad; then the ds is re-run. Counts, checksums, exact
values, tombstones, quarantine and reconciliation are checked against the generator's truth.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from support.mariadb import fresh_mysql, mariadb  # noqa: F401  (the session's MariaDB server)

from tally import catalog
from tally.core.dates import ds_interval
from tally.gates.raw import gate_raw
from tally.lake.checksum import checksum
from tally.sources.erp.dialect import MySQLConn
from tally.sources.erp.extract import ErpOptions, ErpSource
from tally.stages.extract import expected_raw_rows, extract
from tally_local import generator
from tally_local.seed import mysql_connect, seed_erp

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
DS1, DS2 = "2026-04-29", "2026-04-30"
SCALE = generator.Scale(accounts=30, opportunities=60, users=4, days=6)
OPTIONS = ErpOptions(batch_size=64)  # several batches even at this size


@pytest.fixture(params=["postgres", "mysql"])
def erp_db(request):
    """A fresh, empty ERP database of each dialect (one per test)."""
    if request.param == "postgres":
        return request.getfixturevalue("new_database")("erp")
    return fresh_mysql(request.getfixturevalue("mariadb"))


def _execute(conn, statement: str, params: tuple = ()) -> None:
    """Run one statement on the ERP database (``%s`` placeholders in both dialects)."""
    if isinstance(conn, MySQLConn):
        c = mysql_connect(conn, autocommit=True)
        with c.cursor() as cur:
            cur.execute(statement.replace('"', "`"), tuple(
                p.astimezone(UTC).replace(tzinfo=None) if isinstance(p, datetime) else p for p in params))
        c.close()
    else:
        import psycopg

        with psycopg.connect(conn.conninfo(), autocommit=True) as c:
            c.execute(statement, params)


# -- the scenario --------------------------------------------------------------------------------
def _extract(conn, lake, name: str, ds: str) -> dict:
    start, end = ds_interval(ds)
    return ErpSource(conn, OPTIONS).extract(lake, catalog.ERP[name], ds, start, end)


def _expected(rows: list[dict], cursor_before: datetime | None, lo: datetime | None = None) -> list[dict]:
    return [r for r in rows if r["updated_at"] < cursor_before and (lo is None or r["updated_at"] >= lo)]


def test_full_then_incremental_with_deletes_overlap_quarantine_and_rerun(erp_db, lake):
    data = generator.generate(SCALE, seed=21, as_of=AS_OF)
    seed_erp(erp_db, data)
    start1, end1 = ds_interval(DS1)
    start2, end2 = ds_interval(DS2)
    overlap = OPTIONS.overlap

    # ds1: the first ds of every table is a full load of everything before its end.
    first = {name: _extract(erp_db, lake, name, DS1) for name in catalog.ERP}
    for name, m in first.items():
        d = catalog.ERP[name]
        good = _expected(data.erp[name], end1)
        bad = [b for b in data.erp_bad.get(name, []) if b.row["updated_at"] < end1]
        assert m["mode"] == "full" and m["tombstones"] == 0, name
        assert (m["row_count"], m["quarantined"]) == (len(good), len(bad)), name
        assert m["source_count"] == len(good) + len(bad) == expected_raw_rows(m) + m["quarantined"]
        assert m["key_checksum"] == checksum(r[d.key] for r in good), name
        assert m["dialect"] == ("mysql" if isinstance(erp_db, MySQLConn) else "postgres")

    # Exact values: money as decimals, timestamps in UTC, flags false.
    landed = {r["payment_id"]: r for r in lake.read_table("raw/erp/payments", DS1).to_pylist()}
    for truth in _expected(data.erp["payments"], end1):
        row = landed[truth["payment_id"]]
        assert row["amount"] == Decimal(truth["amount"].strip())
        assert row["updated_at"] == truth["updated_at"] and row["updated_at"].utcoffset() == timedelta(0)
        assert row["payment_date"] == truth["payment_date"] and row["_deleted"] is False
    lines = {r["line_id"]: r for r in lake.read_table("raw/erp/order_lines", DS1).to_pylist()}
    for truth in _expected(data.erp["order_lines"], end1):
        assert lines[truth["line_id"]]["line_amount"] == truth["line_amount"]

    # Between the runs: a hard delete, a late commit inside the overlap, a line that goes bad.
    old_lines = sorted(lines)
    deleted_line, spoiled_line = old_lines[0], old_lines[1]
    late = start2 - overlap / 2
    late_payment = _expected(data.erp["payments"], end1)[0]["payment_id"]
    _execute(erp_db, 'DELETE FROM "order_lines" WHERE "line_id" = %s', (deleted_line,))
    _execute(erp_db, 'UPDATE "payments" SET "method" = %s, "updated_at" = %s WHERE "payment_id" = %s',
             ("wire", late, late_payment))
    _execute(erp_db, 'UPDATE "order_lines" SET "order_id" = NULL, "updated_at" = %s WHERE "line_id" = %s',
             (start2 + timedelta(hours=1), spoiled_line))

    second = {}
    for _ in range(2):  # the second pass re-runs ds2: it replaces, never appends
        second = {name: _extract(erp_db, lake, name, DS2) for name in catalog.ERP}
        table = lake.read_table("raw/erp/order_lines", DS2)
        assert table.num_rows == second["order_lines"]["row_count"]
        assert len(set(table.column("line_id").to_pylist())) == table.num_rows
        assert len(lake.files("raw/erp/order_lines", DS2)) == 1

    # The delete: one tombstone, with only the key, the interval end and _deleted = true.
    m = second["order_lines"]
    assert m["tombstones"] == 1 and m["mode"] == "incremental"
    tomb = [r for r in lake.read_table("raw/erp/order_lines", DS2).to_pylist() if r["_deleted"]]
    assert [r["line_id"] for r in tomb] == [deleted_line]
    assert tomb[0]["updated_at"] == end2
    assert all(v is None for k, v in tomb[0].items() if k not in ("line_id", "updated_at", "_deleted"))
    assert m["delete_detection"]["landed_keys"] == len(lines)

    # The late commit inside the overlap window is not lost, and is counted apart.
    p = second["payments"]
    payments = {r["payment_id"]: r for r in lake.read_table("raw/erp/payments", DS2).to_pylist()}
    assert payments[late_payment]["method"] == "wire" and payments[late_payment]["updated_at"] == late
    assert p["overlap_rows"] >= 1 and p["watermark"]["start"] == (start2 - overlap).isoformat()

    # The spoiled line is quarantined with its reason, never landed; reconciliation adds up.
    q = lake.read_table("quarantine/erp/order_lines", DS2).to_pylist()
    assert str(spoiled_line) in {r["line_id"] for r in q}
    assert {r["reason"] for r in q} == {"null order_id"}
    assert m["quarantine"]["reasons"] == {"null order_id": m["quarantined"]}
    for name, manifest in second.items():
        assert manifest["row_count"] == expected_raw_rows(manifest), name
        if name == "products":  # reloaded whole every ds
            assert manifest["mode"] == "full" and manifest["row_count"] == len(_expected(data.erp[name], end2))
        elif name != "order_lines":  # the other tables: exactly the window, overlap included
            now = [{**r, "updated_at": late} if r.get("payment_id") == late_payment else r for r in data.erp[name]]
            window = [r for r in now if start2 - overlap <= r["updated_at"] < end2]
            assert manifest["row_count"] == len(window), name

    # No tombstone for what still exists: every other table found no delete.
    assert all(second[n]["tombstones"] == 0 for n in catalog.ERP if n != "order_lines")


def test_quarantined_rows_keep_the_source_text_and_reconcile(erp_db, lake):
    data = generator.generate(SCALE, seed=22, as_of=AS_OF)
    seed_erp(erp_db, data)
    m = _extract(erp_db, lake, "payments", DS2)  # first ds: everything
    bad = data.erp_bad["payments"]
    assert m["quarantined"] == len(bad) >= 1
    assert m["source_count"] == m["row_count"] + m["quarantined"]
    q = lake.read_table("quarantine/erp/payments", DS2).to_pylist()
    assert sorted(r["amount"] for r in q) == sorted(b.row["amount"] for b in bad)
    assert {r["reason"] for r in q} == {"amount: not a decimal"}
    qm = lake.read_manifest("quarantine/erp/payments", DS2)
    assert qm["row_count"] == len(bad) and qm["reasons"] == {"amount: not a decimal": len(bad)}
    # Fix the source and re-run: the quarantine partition empties, the rows land.
    for b in bad:
        _execute(erp_db, 'UPDATE "payments" SET "amount" = %s WHERE "payment_id" = %s', ("1.00", b.row["payment_id"]))
    again = _extract(erp_db, lake, "payments", DS2)
    assert again["quarantined"] == 0 and again["row_count"] == m["source_count"]
    assert lake.read_manifest("quarantine/erp/payments", DS2) is None


def test_pipeline_records_reconciled_counts_and_the_gate_passes(stack, lake, warehouse_conn, new_database):
    """Through the extract stage and the raw gate: the ledger's source hop is what must land
    (breakdown in details), and the raw gate's row count (source_count + tombstones - quarantined) holds."""
    import psycopg

    from tally import ledger

    conn = new_database("erp")
    data = generator.generate(SCALE, seed=23, as_of=AS_OF)
    seed_erp(conn, data)
    res = stack.resources()
    res.lake, res.warehouse, res.erp = lake, warehouse_conn, conn
    start, end = ds_interval(DS2)
    out = extract(res, "erp.order_lines", DS2, start, end)
    assert out["quarantined"] == len(data.erp_bad["order_lines"]) >= 1
    with psycopg.connect(warehouse_conn.conninfo()) as c:
        flow = ledger.flow(c, DS2)["erp.order_lines"]
    assert flow["source"].row_count == flow["raw"].row_count == len(data.erp["order_lines"])
    assert flow["source"].details["source_count"] == len(data.erp_rows("order_lines"))
    assert flow["source"].details["quarantine"] == {"null order_id": out["quarantined"]}
    assert ledger.first_divergence(flow) is None
    results = gate_raw(res, DS2, ["erp.order_lines"])
    assert all(r["success"] for r in results)


def test_a_rerun_killed_before_its_manifest_leaves_the_previous_version_whole(stack, lake, warehouse_conn,
                                                                                new_database, monkeypatch):
    """Raw ERP and its quarantine: files written, manifest not → the first run's version still reads
    whole, and the raw gate agrees."""
    from support.lake_faults import Killed, assert_previous_version_whole, kill_before_manifest, snapshot

    conn = new_database("erp")
    seed_erp(conn, generator.generate(SCALE, seed=24, as_of=AS_OF))
    res = stack.resources()
    res.lake, res.warehouse, res.erp = lake, warehouse_conn, conn
    d = catalog.ERP["order_lines"]
    start, end = ds_interval(DS2)
    first = extract(res, d.dataset_id, DS2, start, end)
    assert first["quarantined"] >= 1  # the quarantine partition is rewritten too
    before = snapshot(lake, d.lake_path, DS2)
    _execute(conn, 'UPDATE "order_lines" SET "updated_at" = %s WHERE "line_id" IN '
                   '(SELECT "line_id" FROM "order_lines" ORDER BY "line_id" LIMIT 5)', (start + timedelta(hours=1),))
    kill_before_manifest(monkeypatch, d.lake_path)
    with pytest.raises(Killed):
        ErpSource(conn, OPTIONS).extract(lake, d, DS2, start, end)
    assert_previous_version_whole(lake, d.lake_path, DS2, before, d.key)
    assert all(r["success"] for r in gate_raw(res, DS2, [d.dataset_id]))
    # the quarantine the committed raw version names is still there: the new quarantine's sweep
    # waits for the raw commit
    named = lake.read_manifest(d.lake_path, DS2)["quarantine"]
    assert named["files"] and all(lake.exists(lake.path(named["path"], f)) for f in named["files"])


# -- accepted means counted: future-dated rows and schema drift (issue 16) -----------------------------
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def test_a_future_dated_row_lands_in_quarantine_with_a_reason_and_is_counted(erp_db, lake):
    """A row whose updated_at is after the extraction's clock is in no interval that has ended:
    without the future check no run ever reads it. It is set aside with a reason, every run,
    and the counts add up (source = landed + quarantined - tombstones)."""
    data = generator.generate(SCALE, seed=25, as_of=AS_OF)
    seed_erp(erp_db, data)
    first = _extract(erp_db, lake, "sales_orders", DS1)  # full: everything before DS1's end
    order = _expected(data.erp["sales_orders"], ds_interval(DS1)[1])[0]["order_id"]
    _execute(erp_db, 'UPDATE "sales_orders" SET "updated_at" = %s WHERE "order_id" = %s', (FUTURE, order))
    for _ in range(2):  # the re-run of the ds quarantines it again, once
        m = _extract(erp_db, lake, "sales_orders", DS2)
        q = lake.read_table("quarantine/erp/sales_orders", DS2).to_pylist()
        assert [r["order_id"] for r in q] == [str(order)]
        assert q[0]["reason"] == "updated_at in the future" and q[0]["updated_at"].startswith("2099-01-01")
        assert m["quarantined"] == 1 and m["quarantine"]["reasons"] == {"updated_at in the future": 1}
        assert m["source_count"] == m["row_count"] + m["quarantined"] - m["tombstones"]
        assert m["row_count"] == expected_raw_rows(m)
        assert order not in {r["order_id"] for r in lake.read_table("raw/erp/sales_orders", DS2).to_pylist()}
    assert first["quarantined"] == 0
    # a first (full) ds sets it aside as well
    fresh = ErpSource(erp_db, OPTIONS).extract(lake, catalog.ERP["sales_orders"], "2026-04-28",
                                               *ds_interval("2026-04-28"))
    assert fresh["mode"] == "full" and fresh["quarantine"]["reasons"] == {"updated_at in the future": 1}


def _alter(conn, postgres: str, mysql: str) -> None:
    _execute(conn, mysql if isinstance(conn, MySQLConn) else postgres)


def test_added_retyped_and_removed_erp_columns_are_reported_as_drift(erp_db, lake):
    """A new column is a warning the raw gate's summary shows; a column retyped to text fails
    the gate naming it (not only row-by-row quarantine); a removed one lands null and fails."""
    from tally.gates.raw import schema_check

    data = generator.generate(SCALE, seed=26, as_of=AS_OF)
    seed_erp(erp_db, data)
    first = _extract(erp_db, lake, "sales_orders", DS1)
    assert first["schema_drift"] == {"added": [], "removed": [], "retyped": {}}
    assert schema_check("erp.sales_orders", first).success

    _alter(erp_db, 'ALTER TABLE "sales_orders" ADD COLUMN "region" text',
           "ALTER TABLE sales_orders ADD COLUMN region VARCHAR(32)")
    added = _extract(erp_db, lake, "sales_orders", DS2)
    assert added["schema_drift"]["added"] == ["region"] and "region" in added["source_fields"]
    result = schema_check("erp.sales_orders", added)
    assert result.success and "source_field_added(region)" in result.summary()

    _alter(erp_db, 'ALTER TABLE "sales_orders" ALTER COLUMN "total_amount" TYPE text',
           "ALTER TABLE sales_orders MODIFY total_amount VARCHAR(32) NOT NULL")
    retyped = _extract(erp_db, lake, "sales_orders", DS2)  # compared with DS1, the last ds before
    was = "decimal" if isinstance(erp_db, MySQLConn) else "numeric"
    now = "varchar" if isinstance(erp_db, MySQLConn) else "text"
    assert retyped["schema_drift"]["retyped"] == {"total_amount": {"landed": was, "now": now}}
    assert retyped["quarantined"] == 0  # the values still parse: only the drift check sees it
    result = schema_check("erp.sales_orders", retyped)
    assert not result.success
    assert "source_field_type_unchanged(total_amount)" in result.summary()

    _alter(erp_db, 'ALTER TABLE "sales_orders" DROP COLUMN "sf_opportunity_ref"',
           "ALTER TABLE sales_orders DROP COLUMN sf_opportunity_ref")
    removed = _extract(erp_db, lake, "sales_orders", DS2)
    assert removed["schema_drift"]["removed"] == ["sf_opportunity_ref"]
    table = lake.read_table("raw/erp/sales_orders", DS2)
    assert table.column("sf_opportunity_ref").null_count == table.num_rows
    assert "source_field_still_exists(sf_opportunity_ref)" in schema_check("erp.sales_orders", removed).summary()
