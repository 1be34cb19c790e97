"""Absurd amounts at the raw gate, and alerts that resolve themselves (issue 16, item 4).

A ``1e6`` and a 29-digit ERP payment reached ``mart_revenue_by_country`` with every gate green.
Now the payments' outlier rule stops the raw gate (severity ``fail``), naming the rows' keys with
their amounts, or (severity ``warn``) lets the run go on with the warning recorded in
``ops.validation_results`` and shown in the gate summary. An alert raised for the failure resolves
itself, with a note, when a later run of the same gate passes."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from tally import catalog
from tally.alerts import store
from tally.alerts.config import AlertConfig
from tally.alerts.dispatch import raise_alert
from tally.alerts.model import failure_alerts, gate_alert
from tally.core.errors import DataProblem
from tally.core.paths import expectations_dir
from tally.core.resources import Resources
from tally.gates.raw import gate_raw
from tally.lake import Lake, arrow_schema
from tally.lake.writer import land
from tally.ledger import validation_log
from tally.quality.result import GateResult

pytestmark = pytest.mark.integration

PAYMENTS = catalog.get("erp.payments")
DS = "2026-12-02"
TS = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
HUGE = "12345678901234567890123456789"


@pytest.fixture(autouse=True)
def data_docs(tmp_path, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))


def payment(i: int, amount: str) -> dict:
    return {"payment_id": i, "invoice_id": 100 + i, "payment_date": date(2026, 12, 2), "method": "card",
            "amount": Decimal(amount), "currency": "EUR", "created_at": TS, "updated_at": TS, "_deleted": False}


def land_payments(lake: Lake, amounts: list[str]) -> None:
    schema = arrow_schema(PAYMENTS).append(pa.field("_deleted", pa.bool_(), False))
    rows = [payment(i, a) for i, a in enumerate(amounts, start=1)]
    land(lake, PAYMENTS, DS, [pa.RecordBatch.from_pylist(rows, schema=schema)], source_count=len(rows),
         watermark={}, mode="full", schema=schema)


def set_severity(tmp_path: Path, monkeypatch, severity: str) -> None:
    folder = tmp_path / f"suites-{severity}"
    shutil.copytree(expectations_dir(), folder)
    path = folder / "raw.erp.payments.json"
    data = json.loads(path.read_text())
    for e in data["expectations"]:
        if (e.get("meta") or {}).get("rule") == "outlier":
            e["meta"]["severity"] = severity
    path.write_text(json.dumps(data))
    monkeypatch.setenv("TALLY_EXPECTATIONS_DIR", str(folder))


def test_absurd_amounts_stop_the_raw_gate_naming_the_keys(lake, warehouse_conn):
    land_payments(lake, ["12.50", "1000000", HUGE])
    res = Resources(lake=lake, warehouse=warehouse_conn, run_id="run-1")
    with pytest.raises(DataProblem) as info:
        gate_raw(res, DS, ["erp.payments"])
    message = str(info.value)
    assert "expect_column_values_to_be_between(amount)" in message
    assert "observed 2 of 3 rows not <= 500000, e.g. payment_id 2 (amount 1000000.000000000)" in message
    assert "payment_id 3 (amount ≈12345678901234568000000000000)" in message  # checked as a float: marked
    [alert] = failure_alerts("tally_daily", DS, "land.gate_raw", info.value)
    assert "payment_id 2 (amount 1000000.000000000)" in alert.text()


def test_with_severity_warn_the_run_goes_on_and_the_warning_is_recorded_and_shown(lake, warehouse_conn, tmp_path,
                                                                                  monkeypatch):
    set_severity(tmp_path, monkeypatch, "warn")
    land_payments(lake, ["12.50", "1000000", HUGE])
    res = Resources(lake=lake, warehouse=warehouse_conn, run_id="run-1")
    [raw, schema] = gate_raw(res, DS, ["erp.payments"])
    assert raw["success"] and raw["failed"] == 0 and len(raw["warnings"]) == 1
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        stored = conn.execute("SELECT success, warnings FROM ops.validation_results WHERE suite = %s",
                              ("raw.erp.payments",)).fetchone()
        [row] = [r for r in validation_log.latest(conn, DS) if r["dataset"] == "erp.payments"]
    assert stored[0] is True and stored[1][0]["sample"][0] == {"key": {"payment_id": 2},
                                                             "values": {"amount": "1000000.000000000"}}
    assert row["success"] and row["warnings"] == 1
    assert "1 warning" in row["warning_summary"] and "payment_id 2 (amount 1000000.000000000)" in row["warning_summary"]


def test_an_alert_resolves_itself_when_a_later_run_of_the_gate_passes(lake, warehouse_conn):
    dsn = warehouse_conn.conninfo()
    land_payments(lake, ["12.50", "1000000"])
    with pytest.raises(DataProblem) as info:
        gate_raw(Resources(lake=lake, warehouse=warehouse_conn, run_id="run-1"), DS, ["erp.payments"])
    [alert] = failure_alerts("tally_daily", DS, "land.gate_raw", info.value, run_id="run-1")
    assert raise_alert(alert, AlertConfig(), dsn).recorded
    other = GateResult(suite="raw.erp.customers", hop="raw", dataset="erp.customers", success=False, evaluated=1,
                       failed=1, failures=[{"expectation": "expect_table_row_count_to_equal", "observed": 1,
                                            "expected": 2}])
    raise_alert(gate_alert("tally_daily", DS, [other], task_id="land.gate_raw", gate="land.gate_raw:erp.customers"),
                AlertConfig(), dsn)
    with psycopg.connect(dsn) as conn:
        assert {a["gate"] for a in store.list_alerts(conn)} == {"land.gate_raw:erp.payments",
                                                               "land.gate_raw:erp.customers"}

    land_payments(lake, ["12.50", "100.00"])  # re-extracted, fixed at the source
    gate_raw(Resources(lake=lake, warehouse=warehouse_conn, run_id="run-2"), DS, ["erp.payments"])
    with psycopg.connect(dsn) as conn:  # no longer open; the customers' alert (not re-validated) still is
        assert [a["gate"] for a in store.list_alerts(conn)] == ["land.gate_raw:erp.customers"]
        [row] = [a for a in store.list_alerts(conn, include_acknowledged=True) if a["id"] == alert.id]
    assert row["resolved_at"] is not None
    assert row["resolution"] == f"resolved: land.gate_raw:erp.payments passed in run run-2 for ds {DS}"

    # failing again later pages again: the row opens once more
    land_payments(lake, ["12.50", "1000000"])
    with pytest.raises(DataProblem) as again:
        gate_raw(Resources(lake=lake, warehouse=warehouse_conn, run_id="run-3"), DS, ["erp.payments"])
    [alert] = failure_alerts("tally_daily", DS, "land.gate_raw", again.value, run_id="run-3")
    outcome = raise_alert(alert, AlertConfig(), dsn)
    assert outcome.sent and not outcome.duplicate
    with psycopg.connect(dsn) as conn:
        [row] = [a for a in store.list_alerts(conn) if a["gate"] == "land.gate_raw:erp.payments"]
    assert row["resolved_at"] is None and row["occurrences"] == 2
