"""The gates summary is honest: a dataset is failed when any of its suites failed (issue 15, item 1)."""

from __future__ import annotations

from tally.ledger.validation_log import summarise
from tally.reconcile.report import gate_checks, gates_table


def row(suite: str, success: bool, evaluated: int, failed: int, hop: str = "raw", summary: str = "") -> dict:
    dataset = suite.split(".", 1)[1]
    return {"hop": hop, "dataset": dataset, "suite": suite, "success": success, "evaluated": evaluated,
            "failed": failed, "summary": summary or f"{suite}: {evaluated - failed}/{evaluated} passed"}


def test_one_failed_suite_of_two_makes_the_dataset_failed_whichever_comes_first():
    raw = row("raw.erp.payments", False, 7, 1, summary="raw.erp.payments: 6/7 passed; amount negative")
    schema = row("schema.erp.payments", True, 1, 0)
    for rows in ([raw, schema], [schema, raw]):
        [summary] = summarise(rows)
        assert summary["success"] is False
        assert (summary["evaluated"], summary["failed"]) == (8, 1)
        assert summary["suites"] == ["raw.erp.payments", "schema.erp.payments"]
        assert summary["failed_suites"] == ["raw.erp.payments"]
        assert summary["summary"] == "raw.erp.payments: 6/7 passed; amount negative"
        assert gate_checks(summary) == "1 of 8 failed: raw.erp.payments: 6/7 passed; amount negative"


def test_passed_dataset_counts_every_check_of_every_suite():
    [summary] = summarise([row("raw.salesforce.Opportunity", True, 7, 0),
                           row("schema.salesforce.Opportunity", True, 1, 0)])
    assert summary["success"] is True and summary["summary"] == ""
    assert gate_checks(summary) == "8/8 passed (raw.salesforce.Opportunity, schema.salesforce.Opportunity)"


def test_failures_come_first_then_the_pipeline_order():
    rows = [row("mart.mart_a", True, 5, 0, hop="mart"), row("raw.erp.customers", True, 3, 0),
            row("curated.opps", False, 4, 2, hop="curated"), row("raw.erp.payments", False, 7, 1)]
    order = [(s["hop"], s["dataset"], s["success"]) for s in summarise(rows)]
    assert order == [("raw", "erp.payments", False), ("curated", "opps", False),
                     ("raw", "erp.customers", True), ("mart", "mart_a", True)]


def test_the_table_shows_the_failed_dataset_as_failed():
    from rich.console import Console

    rows = summarise([row("schema.erp.payments", True, 1, 0),
                      row("raw.erp.payments", False, 7, 1, summary="raw.erp.payments: 6/7 passed; x")])
    console = Console(width=200, record=True)
    console.print(gates_table(rows))
    text = console.export_text()
    assert "FAILED" in text and "passed 1/1" not in text and "1 of 8 failed" in text
