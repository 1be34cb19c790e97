"""Outlier rules on money columns (issue 16, item 4): an absurd amount (``1e6`` payment, a 29-digit
one) is caught by a per-column bound in the dataset's suite, failing or warning as the suite says."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from tally import catalog
from tally.core.paths import expectations_dir
from tally.gates.common import gate_line
from tally.lake import Lake, PartitionWriter, arrow_schema
from tally.quality import parquet, suites

PAYMENTS = catalog.get("erp.payments")
DS = "2026-12-02"
TS = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
HUGE = "12345678901234567890123456789"  # 29 digits: the widest decimal(38, 9) holds
# (suite, money column) that must carry an outlier rule
MONEY = [("raw.erp.payments", "amount"), ("raw.erp.sales_orders", "total_amount"), ("raw.erp.invoices", "amount"),
         ("raw.erp.order_lines", "line_amount"), ("raw.salesforce.Opportunity", "Amount")]


@pytest.fixture(autouse=True)
def data_docs(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))
    return tmp_path / "data_docs"


def payment(i: int, amount: str) -> dict:
    return {"payment_id": i, "invoice_id": 100 + i, "payment_date": date(2026, 12, 2), "method": "card",
            "amount": Decimal(amount), "currency": "EUR", "created_at": TS, "updated_at": TS, "_deleted": False}


def absurd_payments(tmp_path: Path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    schema = arrow_schema(PAYMENTS).append(pa.field("_deleted", pa.bool_(), False))
    rows = [payment(1, "12.50"), payment(2, "1000000"), payment(3, HUGE), payment(4, "89999.99")]
    files = PartitionWriter(lake, PAYMENTS.lake_path, DS).write(
        schema, [pa.RecordBatch.from_pylist(rows, schema=schema)], rows_per_file=100)
    lake.write_manifest(PAYMENTS.lake_path, DS, {"files": files, "row_count": len(rows)})
    return lake


def with_severity(tmp_path: Path, severity: str) -> Path:
    """A copy of the suites with the payments' outlier rule set to ``severity``."""
    folder = tmp_path / "suites"
    shutil.copytree(expectations_dir(), folder)
    path = folder / "raw.erp.payments.json"
    data = json.loads(path.read_text())
    [rule] = [e for e in data["expectations"] if (e.get("meta") or {}).get("rule") == "outlier"]
    rule["meta"]["severity"] = severity
    path.write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("suite, column", MONEY)
def test_every_money_column_has_a_bounded_outlier_rule_with_a_severity(suite, column):
    data = suites.load_suite_dict(suite)
    [rule] = [e for e in data["expectations"] if (e.get("meta") or {}).get("rule") == "outlier"
              and e["kwargs"].get("column") == column]
    assert rule["type"] == "expect_column_values_to_be_between"
    assert rule["kwargs"]["mostly"] == 1.0 and rule["kwargs"]["max_value"] > 0
    assert rule["meta"]["severity"] in ("fail", "warn")


def test_a_bad_severity_is_a_suite_error(tmp_path):
    folder = with_severity(tmp_path, "maybe")
    with pytest.raises(suites.SuiteError, match="severity"):
        suites.load_suite_dict("raw.erp.payments", folder)


@pytest.mark.parametrize("batch_rows", [None, 2])
def test_absurd_amounts_fail_the_raw_suite_naming_the_keys_with_their_values(tmp_path, batch_rows):
    lake = absurd_payments(tmp_path)
    result = parquet.validate_parquet("raw.erp.payments", lake, PAYMENTS.lake_path, DS, {"source_count": 4},
                                      batch_rows=batch_rows)
    assert not result.success and result.warnings == []
    [outlier] = result.failures
    assert outlier["expectation"] == "expect_column_values_to_be_between" and outlier["severity"] == "fail"
    assert [s["key"] for s in outlier["sample"]] == [{"payment_id": 2}, {"payment_id": 3}]
    assert outlier["sample"][0]["values"] == {"amount": "1000000.000000000"}
    # checked as a float: beyond 2**53 the shown value is marked approximate, never passed off as exact
    assert outlier["sample"][1]["values"]["amount"] == "≈12345678901234568000000000000"
    assert "payment_id 2 (amount 1000000.000000000)" in result.summary()


def test_with_severity_warn_the_suite_passes_and_the_warning_is_kept(tmp_path):
    lake = absurd_payments(tmp_path)
    result = parquet.validate_parquet("raw.erp.payments", lake, PAYMENTS.lake_path, DS, {"source_count": 4},
                                      suites_dir=with_severity(tmp_path, "warn"))
    assert result.success and result.failures == [] and result.failed == 0
    [warning] = result.warnings
    assert warning["severity"] == "warn" and [s["key"] for s in warning["sample"]] == [
        {"payment_id": 2}, {"payment_id": 3}]
    line = gate_line(result)
    assert line.startswith("raw.erp.payments PASSED 8/9 checks, 1 warning: expect_column_values_to_be_between(amount)")
    assert "payment_id 2 (amount 1000000.000000000)" in line
    assert "1 warning" in result.summary() and result.to_dict()["warnings"] == [warning]
