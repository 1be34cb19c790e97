"""Failures name the offending rows by key, with the value beside, and money at its scale
(issue 15, item 7: an alert said ``sample keys: -500.00000000000006``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from tally import catalog, contract
from tally.alerts import channels
from tally.alerts.model import gate_alert
from tally.lake import Lake, PartitionWriter, arrow_schema
from tally.quality import context, parquet, suites
from tally.quality.result import format_sample

PAYMENTS = catalog.get("erp.payments")
TS = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def payment(i: int, amount: str, method: str = "card") -> dict:
    return {"payment_id": i, "invoice_id": 100 + i, "payment_date": date(2026, 12, 2), "method": method,
            "amount": Decimal(amount), "currency": "EUR", "created_at": TS, "updated_at": TS, "_deleted": False}


def failure(result, expectation: str) -> dict:
    [hit] = [f for f in result.failures if f["expectation"] == expectation]
    return hit


def test_a_failing_suite_on_a_small_frame_alerts_with_the_keys_and_the_values_beside():
    # amounts as the raw gate hands them to GX: floats (decimal(38,9) cast by Arrow), with float noise
    frame = pd.DataFrame([payment(i, "12.5") for i in range(1, 6)])
    frame["amount"] = [12.5, -500.00000000000006, 3.0, 7.25, -0.1]
    frame.loc[3, "method"] = "cash"
    result = context.validate_dataframe("raw.erp.payments", frame, {"source_count": 5}, scales={"amount": 9})
    amount = failure(result, "expect_column_values_to_be_between")
    assert amount["key"] == ["payment_id"]
    assert amount["sample"] == [{"key": {"payment_id": 2}, "values": {"amount": "-500.000000000"}},
                                {"key": {"payment_id": 5}, "values": {"amount": "-0.100000000"}}]
    assert failure(result, "expect_column_values_to_be_in_set")["sample"] == [
        {"key": {"payment_id": 4}, "values": {"method": "cash"}}]

    alert = gate_alert("tally_daily", "2026-12-02", [result], task_id="land.gate_raw")
    text = alert.text()
    assert "sample keys: payment_id 2 (amount -500.000000000), payment_id 5 (amount -0.100000000)\n" in text
    assert "sample keys: payment_id 4 (method cash)\n" in text
    assert "e.g. payment_id 2 (amount -500.000000000)" in alert.summary  # the one-line what
    assert "500.00000000000006" not in text and "-500.0," not in text
    slack = json.dumps(channels.slack_payload(alert))
    assert "`payment_id 2 (amount -500.000000000)`" in slack and "500.00000000000006" not in slack


def test_a_lake_partition_names_keys_and_shows_money_at_the_column_scale(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    schema = arrow_schema(PAYMENTS).append(pa.field("_deleted", pa.bool_(), False))
    rows = [payment(1, "10.000000001"), payment(2, "-500.000000000"), payment(3, "-0.000000001"), payment(3, "4")]
    files = PartitionWriter(lake, PAYMENTS.lake_path, "2026-12-02").write(
        schema, [pa.RecordBatch.from_pylist(rows, schema=schema)], rows_per_file=100)
    lake.write_manifest(PAYMENTS.lake_path, "2026-12-02", {"files": files, "row_count": len(rows)})
    for batch_rows in (None, 2):  # one frame, and batch-wise
        result = parquet.validate_parquet("raw.erp.payments", lake, PAYMENTS.lake_path, "2026-12-02",
                                          {"source_count": 4}, batch_rows=batch_rows)
        assert failure(result, "expect_column_values_to_be_between")["sample"] == [
            {"key": {"payment_id": 2}, "values": {"amount": "-500.000000000"}},
            {"key": {"payment_id": 3}, "values": {"amount": "-0.000000001"}},
        ]
        assert failure(result, "expect_column_values_to_be_unique")["sample"] == [
            {"key": {"payment_id": 3}, "values": {}}] * 2
        text = gate_alert("tally_daily", "2026-12-02", [result], task_id="land.gate_raw").text()
        assert "payment_id 2 (amount -500.000000000)" in text and "payment_id 3, payment_id 3" in text


@pytest.mark.parametrize("item, shown", [
    ({"key": {"payment_id": 7}, "values": {"amount": "-500.000000000"}}, "payment_id 7 (amount -500.000000000)"),
    ({"key": {"owner_id": "005A", "quarter": "2026-Q4"}, "values": {}}, "owner_id 005A, quarter 2026-Q4"),
    ({"key": {"Id": None}, "values": {}}, "Id null"),
    ({"key": {"Id": "006A"}, "values": {"StageName": " padded"}}, "Id 006A (StageName ' padded')"),
    ("part-x-00000.parquet", "part-x-00000.parquet"),  # a gate's own samples (files, keys) stay as they are
    (21, "21"),
])
def test_format_sample(item, shown):
    assert format_sample(item) == shown


def test_every_suite_names_its_dataset_key_as_the_catalog_and_the_contract_do():
    for name in suites.list_suites():
        hop, dataset = suites.split_name(name)
        key = suites.suite_key(suites.load_suite_dict(name))
        if hop == "raw":
            assert key == [catalog.get(dataset).key], name
        elif hop == "curated":
            assert key == [contract.CURATED_KEYS[dataset]], name
        else:  # a mart's grain, without its ds
            assert key and "ds" not in key, name


def test_the_full_reconciliation_names_its_keys_too():
    from tally.reconcile.full import gate_results

    report = {"dataset": "erp.payments", "found": {"missing": 2}, "left": {"missing": 2}, "healed": {},
              "samples": {"missing": [6, 7]}, "left_samples": {"missing": [6, 7]}, "cutoff": "2026-12-02"}
    [result] = gate_results([report])
    text = gate_alert("tally_reconcile", "2026-12-02", [result], task_id="check").text()
    assert "sample keys: payment_id 6, payment_id 7\n" in text


def test_without_its_key_column_a_sample_still_shows_the_values_at_their_scale():
    frame = pd.DataFrame([payment(i, "1") for i in range(1, 4)]).drop(columns=["payment_id"])
    frame["amount"] = [1.0, -500.00000000000006, 2.0]
    result = context.validate_dataframe("raw.erp.payments", frame, {"source_count": 3}, scales={"amount": 9})
    assert failure(result, "expect_column_values_to_be_between")["sample"] == ["-500.000000000"]
    assert "sample: -500.000000000\n" in gate_alert("tally_daily", "2026-12-02", [result]).text()
