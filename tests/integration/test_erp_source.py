"""The ERP extractor against real databases: embedded Postgres and a MariaDB server started here.

The same scenario runs on both dialects: a full first ds, then a ds in which one order line was
hard-deleted, one payment was updated with an ``updated_at`` inside the overlap window (it
committed late), and one order line went bad; then the ds is re-run. Counts, checksums, exact
values, tombstones, quarantine and reconciliation are checked against the generator's truth.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tally import catalog, generator, pipeline
from tally.checksum import checksum
from tally.seed import mysql_connect, seed_erp
from tally.sources import erp
from tally.sources.erp_dialect import MySQLConn
from tally.stack.process import free_port, port_open

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
DS1, DS2 = "2026-04-29", "2026-04-30"
SCALE = generator.Scale(accounts=30, opportunities=60, users=4, days=6)
OPTIONS = erp.ErpOptions(batch_size=64)  # several batches even at this size


# -- MariaDB, started for the session ------------------------------------------------------------
def _mariadb_binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


@pytest.fixture(scope="session")
def mariadb() -> MySQLConn:
    """A throw-away MariaDB server on a free port (Debian's ``mariadb-server``, installed if missing)."""
    if _mariadb_binaries() is None:
        if os.geteuid() != 0:
            pytest.skip("MariaDB is not installed and we are not root: apt-get install -y mariadb-server")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mariadb-server"],
                              env=env, capture_output=True, text=True)
        if _mariadb_binaries() is None:
            pytest.fail(f"apt-get install mariadb-server failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    server, install = _mariadb_binaries()
    root = Path(tempfile.mkdtemp(prefix="tally-mariadb-", dir="/var/tmp" if os.geteuid() == 0 else None))
    user = "mysql" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    if os.geteuid() == 0:
        os.chmod(root, 0o755)
        shutil.chown(root, user, user)
    data, sock, log = root / "data", root / "mysqld.sock", root / "mariadb.log"
    subprocess.run([install, "--no-defaults", f"--datadir={data}", f"--user={user}", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True)
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                                 "--bind-address=127.0.0.1", f"--user={user}", "--skip-log-bin", "--skip-name-resolve",
                                 "--innodb-buffer-pool-size=64M", f"--pid-file={root / 'mariadb.pid'}"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (port_open(port) and sock.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"MariaDB did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        password = secrets.token_hex(8)
        admin = mysql_connect(MySQLConn("localhost", port, "root", "", "mysql", unix_socket=str(sock)), autocommit=True)
        with admin.cursor() as cur:
            cur.execute("CREATE USER 'tally'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'tally'@'127.0.0.1'")
        admin.close()
        yield MySQLConn("127.0.0.1", port, "tally", password, "mysql")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _fresh_mysql(server: MySQLConn) -> MySQLConn:
    name = f"erp_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(server, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return replace(server, dbname=name)


@pytest.fixture(params=["postgres", "mysql"])
def erp_db(request):
    """A fresh, empty ERP database of each dialect (one per test)."""
    if request.param == "postgres":
        return request.getfixturevalue("new_database")("erp")
    return _fresh_mysql(request.getfixturevalue("mariadb"))


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
    start, end = generator.ds_interval(ds)
    return erp.extract(conn, lake, catalog.ERP[name], ds, start, end, options=OPTIONS)


def _expected(rows: list[dict], cursor_before: datetime | None, lo: datetime | None = None) -> list[dict]:
    return [r for r in rows if r["updated_at"] < cursor_before and (lo is None or r["updated_at"] >= lo)]


def test_full_then_incremental_with_deletes_overlap_quarantine_and_rerun(erp_db, lake):
    data = generator.generate(SCALE, seed=21, as_of=AS_OF)
    seed_erp(erp_db, data)
    start1, end1 = generator.ds_interval(DS1)
    start2, end2 = generator.ds_interval(DS2)
    overlap = OPTIONS.overlap

    # ds1: the first ds of every table is a full load of everything before its end.
    first = {name: _extract(erp_db, lake, name, DS1) for name in catalog.ERP}
    for name, m in first.items():
        d = catalog.ERP[name]
        good = _expected(data.erp[name], end1)
        bad = [b for b in data.erp_bad.get(name, []) if b.row["updated_at"] < end1]
        assert m["mode"] == "full" and m["tombstones"] == 0, name
        assert (m["row_count"], m["quarantined"]) == (len(good), len(bad)), name
        assert m["source_count"] == len(good) + len(bad) == pipeline.expected_raw_rows(m) + m["quarantined"]
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
        assert manifest["row_count"] == pipeline.expected_raw_rows(manifest), name
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
    """Through ``pipeline``: the ledger's source hop is what must land (breakdown in details), and
    the raw gate's row count (source_count + tombstones - quarantined) holds."""
    import psycopg

    from tally import ledger

    conn = new_database("erp")
    data = generator.generate(SCALE, seed=23, as_of=AS_OF)
    seed_erp(conn, data)
    res = stack.resources()
    res.lake, res.warehouse, res.erp = lake, warehouse_conn, conn
    start, end = generator.ds_interval(DS2)
    out = pipeline.extract(res, "erp.order_lines", DS2, start, end)
    assert out["quarantined"] == len(data.erp_bad["order_lines"]) >= 1
    with psycopg.connect(warehouse_conn.conninfo()) as c:
        flow = ledger.flow(c, DS2)["erp.order_lines"]
    assert flow["source"].row_count == flow["raw"].row_count == len(data.erp["order_lines"])
    assert flow["source"].details["source_count"] == len(data.erp_rows("order_lines"))
    assert flow["source"].details["quarantine"] == {"null order_id": out["quarantined"]}
    assert ledger.first_divergence(flow) is None
    results = pipeline.gate_raw(res, "erp.order_lines", DS2)
    assert all(r["success"] for r in results)
