"""The gates summary read from ops.validation_results says failed when one of a dataset's two
suites of the same run failed (issue 15, item 1: DISTINCT ON (hop, dataset) showed the passed one)."""

from __future__ import annotations

import psycopg
import pytest

from tally.ledger import validation_log
from tally.quality.result import GateResult

pytestmark = pytest.mark.integration

DS = "2026-12-02"


def result(suite: str, success: bool, evaluated: int, failed: int) -> GateResult:
    dataset = suite.split(".", 1)[1]
    failures = [] if success else [{"expectation": "expect_column_values_to_be_between", "column": "amount",
                                    "observed": 1, "expected": 0, "unexpected_count": 1, "element_count": 5,
                                    "sample": []}]
    return GateResult(suite=suite, hop="raw", dataset=dataset, success=success, evaluated=evaluated,
                      failed=failed, failures=failures)


def test_a_failed_suite_is_not_hidden_behind_a_passed_one_of_the_same_run(warehouse_conn):
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        # an earlier run where everything passed, then the run where the raw suite failed; the raw
        # and schema suites of one gate run share run_at (one transaction)
        for raw_ok in (True, False):
            with conn.transaction():
                validation_log.store(conn, DS, result("raw.erp.payments", raw_ok, 7, 0 if raw_ok else 1), "r")
                validation_log.store(conn, DS, result("schema.erp.payments", True, 1, 0), "r")
                validation_log.store(conn, DS, result("raw.erp.customers", True, 6, 0), "r")
                validation_log.store(conn, DS, result("schema.erp.customers", True, 1, 0), "r")
        summary = validation_log.latest(conn, DS)
    assert [(s["dataset"], s["success"], s["evaluated"], s["failed"]) for s in summary] == [
        ("erp.payments", False, 8, 1), ("erp.customers", True, 7, 0)]
    assert summary[0]["failed_suites"] == ["raw.erp.payments"]
    assert summary[0]["summary"].startswith("raw.erp.payments: 6/7 passed; expect_column_values_to_be_between")
    assert summary[1]["suites"] == ["raw.erp.customers", "schema.erp.customers"]
