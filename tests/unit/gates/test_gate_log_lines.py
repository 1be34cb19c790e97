"""A gate's task log says, in one line per suite, what passed and what failed (issue 15: it was
preload noise plus a dict dump of every result)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from tally.core.errors import DataProblem
from tally.gates import common
from tally.quality.result import GateResult


def _result(suite: str, evaluated: int, failures: list[dict]) -> GateResult:
    hop, dataset = suite.split(".", 1)
    return GateResult(suite=suite, hop=hop, dataset=dataset, success=not failures, evaluated=evaluated,
                      failed=len(failures), failures=failures)


ROW_COUNT = {"expectation": "expect_table_row_count_to_equal", "observed": 998, "expected": 1000}


def test_a_passed_suite_is_one_short_line():
    assert common.gate_line(_result("raw.erp.payments", 7, [])) == "raw.erp.payments PASSED 7/7 checks"


def test_a_failed_suite_names_its_failed_checks():
    line = common.gate_line(_result("raw.erp.payments", 7, [ROW_COUNT]))
    assert line.startswith("raw.erp.payments FAILED 1/7 checks: expect_table_row_count_to_equal")
    assert "998" in line and "1000" in line and "\n" not in line


def test_failed_suites_come_first_then_by_name():
    results = [_result("raw.salesforce.User", 4, []), _result("schema.erp.payments", 1, []),
               _result("raw.erp.payments", 7, [ROW_COUNT])]
    assert [line.split()[:2] for line in common.gate_lines(results)] == [
        ["raw.erp.payments", "FAILED"], ["raw.salesforce.User", "PASSED"], ["schema.erp.payments", "PASSED"]]


class _Conn:
    def commit(self) -> None:
        pass


def test_storing_results_logs_one_line_per_suite_and_no_dict(monkeypatch, caplog):
    monkeypatch.setattr(common.validation_log, "store", lambda *a, **k: None)
    monkeypatch.setattr(common, "resolve_alerts", lambda *a, **k: None)  # ops.alerts: no database here
    results = [_result("raw.erp.customers", 6, []), _result("raw.erp.payments", 7, [ROW_COUNT])]
    with caplog.at_level(logging.INFO, logger="tally.gates"), pytest.raises(DataProblem):
        common.store_and_raise(SimpleNamespace(run_id="r1"), "2026-12-01", results, conn=_Conn())
    lines = [r.getMessage() for r in caplog.records if r.name == "tally.gates"]
    assert lines == common.gate_lines(results)
    assert lines[0].startswith("raw.erp.payments FAILED 1/7") and lines[1] == "raw.erp.customers PASSED 6/6 checks"
    assert not any("{" in line for line in lines)
