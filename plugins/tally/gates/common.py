"""What every gate shares: storing its results and raising for the failed ones, and its SQL files."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable
from importlib import resources

import psycopg

from tally.core.errors import DataProblem
from tally.core.resources import Resources
from tally.ledger import validation_log
from tally.quality.result import GateResult, describe_failure, warning_count

log = logging.getLogger("tally.gates")


def store_and_raise(res: Resources, ds: str, results: list, conn: psycopg.Connection | None = None) -> list[dict]:
    """Store every result (committed, on ``conn`` if given), then raise one ``DataProblem`` for the failed ones."""
    if conn is None:
        with psycopg.connect(res.warehouse.conninfo()) as own:
            return store_and_raise(res, ds, results, own)
    for r in results:
        validation_log.store(conn, ds, r, res.run_id)
    conn.commit()
    resolve_alerts(conn, ds, results, res.run_id)
    for line in gate_lines(results):  # the task log: one line per suite, failed ones first
        log.info("%s", line)
    failed = [r for r in results if not r.success]
    if failed:
        raise DataProblem("; ".join(r.summary() for r in failed), failed)
    return [r.to_dict() for r in results]


def resolve_alerts(conn: psycopg.Connection, ds: str, results: list, run_id: str | None) -> None:
    """Resolve the open alerts of ``ds`` whose suites all passed in this run of the gate
    (``tally.alerts.store.resolve_passed``). Never fails the gate: it only logs."""
    from tally.alerts import store

    try:
        for alert_id, note in store.resolve_passed(conn, ds, results, run_id):
            log.info("alert %s %s", alert_id, note)
    except Exception as exc:  # the gate's verdict stands whatever ops.alerts says
        with contextlib.suppress(Exception):
            conn.rollback()
        log.warning("could not resolve the alerts of ds %s in ops.alerts: %s", ds, exc)


def gate_line(result: GateResult) -> str:
    """One line for a log, e.g. ``raw.erp.payments FAILED 1/7 checks: expect_… observed …``,
    ``raw.erp.payments PASSED 7/7 checks`` or, with a warn-severity failure,
    ``raw.erp.payments PASSED 7/8 checks, 1 warning: expect_… observed …``."""
    warned = "; ".join(describe_failure(w) for w in result.warnings)
    if result.success:
        head = f"{result.suite} PASSED {result.passed}/{result.evaluated} checks"
        return f"{head}{warning_count(result.warnings)}: {warned}" if warned else head
    why = "; ".join(describe_failure(f) for f in result.failures) or "no detail recorded"
    return f"{result.suite} FAILED {result.failed}/{result.evaluated} checks: {why}" + (
        f"; {warning_count(result.warnings).removeprefix(', ')}: {warned}" if warned else "")


def gate_lines(results: Iterable[GateResult]) -> list[str]:
    """:func:`gate_line` of each result, failed ones first, then by suite name."""
    return [gate_line(r) for r in sorted(results, key=lambda r: (r.success, r.suite))]


@functools.cache
def sql_file(name: str) -> str:
    """The text of ``gates/sql/<name>`` (package data)."""
    return resources.files("tally.gates").joinpath("sql", name).read_text()


def sql_statements(name: str) -> list[str]:
    """The statements of ``gates/sql/<name>``, split on the ``;`` that ends a line, comments kept."""
    parts = [p.strip() for p in sql_file(name).split(";\n")]
    return [p.rstrip(";").strip() for p in parts if any(
        line.strip() and not line.strip().startswith("--") for line in p.splitlines())]
