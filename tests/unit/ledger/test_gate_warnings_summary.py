"""The gate summary shows a passed suite's warnings (warn-severity failures, issue 16 item 4)."""

from __future__ import annotations

from tally.ledger.validation_log import summarise

WARNING = {"expectation": "expect_column_values_to_be_between", "column": "amount", "severity": "warn",
           "observed": 1, "expected": 0, "condition": "between 0 and 500000", "unexpected_count": 1, "element_count": 3,
           "sample": [{"key": {"payment_id": 2}, "values": {"amount": "1000000.000000000"}}]}


def test_a_passed_dataset_with_a_warning_says_so():
    rows = [{"hop": "raw", "dataset": "erp.payments", "suite": "raw.erp.payments", "success": True, "evaluated": 9,
             "failed": 0, "summary": "", "warnings": [WARNING]},
            {"hop": "raw", "dataset": "erp.payments", "suite": "schema.erp.payments", "success": True,
             "evaluated": 1, "failed": 0, "summary": "", "warnings": []},
            {"hop": "raw", "dataset": "erp.customers", "suite": "raw.erp.customers", "success": True,
             "evaluated": 6, "failed": 0, "summary": ""}]  # a row stored before warnings existed
    payments, customers = sorted(summarise(rows), key=lambda r: r["dataset"], reverse=True)
    assert payments["success"] and payments["warnings"] == 1
    assert payments["warning_summary"] == (
        "raw.erp.payments: 1 warning: expect_column_values_to_be_between(amount) observed 1 of 3 rows not between 0"
        " and 500000, e.g. payment_id 2 (amount 1000000.000000000)")
    assert (customers["warnings"], customers["warning_summary"]) == (0, "")
