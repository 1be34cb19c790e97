"""The mart gate: every mart's ds slice, its GX suite and its business totals reconciled exactly
with the curated zone.

Business totals: each mart must share them exactly with the curated zone (warehouse
``curated.*``, itself gated against the Spark manifests) for one ds. They are the statements of
``gates/sql/<mart>.observed.sql`` (the mart side, over the mart filled in with psycopg.sql) and,
in the same order, of ``gates/sql/<mart>.expected.sql`` (the curated side): each one row with a
column per check, named alike on both sides, so that a table is scanned once for all its
totals. Both sides are computed in Postgres as numeric/bigint and compared exactly (Decimal
==), never as float. Their parameters are the ds and the contract's open-pipeline bounds
(``tally.contract.OPEN_PIPELINE_PROBABILITY``). A ``rows`` check's expected value is also the
mart suite's ``expected_rows``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tally import contract
from tally.contract import MART_SCHEMA, MARTS
from tally.core.errors import DataProblem
from tally.core.resources import Resources, check_ds, record
from tally.gates.common import sql_file, sql_statements, store_and_raise
from tally.ledger import Entry
from tally.quality.result import GateResult

# Columns gate_mart refreshes statistics of before reconciling: slice dates and join keys.
MART_GATE_STAT_COLUMNS = ("ds", "_ds", "opportunity_id", "account_id")
# The ledger's mart hop: (curated dataset, mart, key column) measured on the mart's ds slice.
MART_LEDGER = (("rep_rankings", "mart_rep_performance", "ranking_id"),
               ("order_links", "mart_o2r_pipeline", "order_id"),
               ("account_engagement", "mart_account_health", "account_id"))


def totals_parameters(ds: str) -> dict[str, object]:
    """The reconciliation statements' parameters: the ds and the business rules' bounds."""
    low, high = contract.OPEN_PIPELINE_PROBABILITY
    return {"ds": ds, "open_pipeline_min_probability": low, "open_pipeline_max_probability": high}


def mart_totals(conn: psycopg.Connection, mart: str, ds: str) -> dict[str, tuple[object, object]]:
    """Every reconciliation check of one mart for ds: ``{check: (observed in the mart, expected
    from the curated zone)}``."""
    params = totals_parameters(ds)
    observed_side, expected_side = sql_statements(f"{mart}.observed.sql"), sql_statements(f"{mart}.expected.sql")
    totals: dict[str, tuple[object, object]] = {}
    for mart_side, curated_side in zip(observed_side, expected_side, strict=True):
        cur = conn.execute(sql.SQL(mart_side).format(mart=sql.Identifier(MART_SCHEMA, mart)), params)  # type: ignore[arg-type]
        checks = [column.name for column in cur.description or ()]
        observed = cur.fetchone()
        cur = conn.execute(curated_side, params)  # type: ignore[call-overload]
        if [column.name for column in cur.description or ()] != checks:
            raise ValueError(f"gates/sql/{mart}.observed.sql and .expected.sql name different checks")
        expected = cur.fetchone()
        totals.update(zip(checks, zip(observed, expected, strict=True), strict=True))
    return totals


def totals_failures(totals: dict[str, tuple[object, object]]) -> list[dict]:
    """The checks of :func:`mart_totals` whose two sides differ, as gate failures."""
    return [{"expectation": f"mart_{check}_equals_curated", "column": check,
             "observed": str(observed), "expected": str(expected),
             "difference": str(observed - expected) if None not in (observed, expected) else None}  # type: ignore[operator]
            for check, (observed, expected) in totals.items() if observed != expected]


def _refresh_statistics(conn: psycopg.Connection) -> None:
    """The tables were just written (COPY, dbt) and autovacuum has not sampled them yet: the
    planner misjudged an IN (subquery) check as tiny and nested loops over it, 43 s instead of
    0.05 s at 100k opportunities. Fresh statistics of the columns the checks filter and join on
    only (row counts come with any ANALYZE): a whole-table ANALYZE also samples every text and
    money column, ~6x the time (0.9 s of the gate at 100k opportunities)."""
    tables = [*(f"{MART_SCHEMA}.{m}" for m in MARTS), *(f"curated.{c}" for c in contract.CURATED)]
    stat_columns: dict[str, list[str]] = {}
    for table, column in conn.execute(sql_file("stat_columns.sql"),  # type: ignore[call-overload]
                                      {"tables": tables, "columns": list(MART_GATE_STAT_COLUMNS)}).fetchall():
        stat_columns.setdefault(table, []).append(column)
    for table in tables:
        schema, name = table.split(".")
        conn.execute(sql.SQL("ANALYZE {} ({})").format(
            sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, stat_columns[table]))))


def gate_mart(res: Resources, ds: str, workers: int | None = None) -> list[dict]:
    """Every mart's ds slice: its GX suite (`expectations/mart.<mart>.json`, in SQL) and its business
    totals reconciled exactly with the curated zone; ledger: mart hop. One result per mart.

    The suites run in ``workers`` forked processes (``$TALLY_GATE_WORKERS``, default: the cores,
    at most 4; ``tally.quality.parallel``), biggest mart first."""
    from tally.lake.checksum import postgres_sql
    from tally.load.warehouse import ensure_ops, measure
    from tally.quality import docs
    from tally.quality.parallel import fork_each, workers_default
    from tally.quality.postgres import validate_postgres_table

    check_ds(ds)
    results, entries = [], []
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure_ops(conn)  # the checksum helper (the loader creates it too)
        for mart in MARTS:
            if conn.execute("SELECT to_regclass(%s)", (f"{MART_SCHEMA}.{mart}",)).fetchone()[0] is None:
                raise DataProblem(f"{MART_SCHEMA}.{mart} does not exist: did dbt build it?")
        _refresh_statistics(conn)
        conn.commit()  # the fresh statistics serve the GX validations' own sessions too
        # no nested loops or JIT for these whole-slice aggregates (see _refresh_statistics)
        conn.execute("SET LOCAL enable_nestloop = off")
        conn.execute("SET LOCAL jit = off")
        totals = {mart: mart_totals(conn, mart, ds) for mart in MARTS}

        def validate(mart: str) -> GateResult:
            params = {"expected_rows": totals[mart]["rows"][1]} if "rows" in totals[mart] else {}
            return validate_postgres_table(f"mart.{mart}", res.warehouse.conninfo(), MART_SCHEMA, mart, params,
                                           where={"ds": ds})

        with docs.batch_publish():  # one Data Docs index update for the four marts
            workers = workers_default() if workers is None else max(1, workers)
            if workers > 1:  # GX's Python work in one mart's process overlaps Postgres' work on another's
                biggest_first = sorted(MARTS, key=lambda m: -int(totals[m].get("rows", (0, 0))[1] or 0))
                suites = dict(zip(biggest_first, fork_each(validate, biggest_first, workers), strict=True))
            else:
                suites = {mart: validate(mart) for mart in MARTS}
        for mart in MARTS:
            suite, failed = suites[mart], totals_failures(totals[mart])
            results.append(GateResult(
                suite=suite.suite, hop="mart", dataset=mart, success=suite.success and not failed,
                evaluated=suite.evaluated + len(totals[mart]), failed=suite.failed + len(failed),
                failures=suite.failures + failed, run_at=suite.run_at,
                target=f"{suite.target}; totals vs curated.* where _ds = {ds}", parameters=suite.parameters))
        for dataset, mart, key in MART_LEDGER:
            if key == "order_id":  # o2r: only order flows carry an order (one row each)
                count, checksum = conn.execute(
                    sql.SQL("SELECT count(*), {} FROM {} WHERE ds = %s AND order_id IS NOT NULL").format(
                        sql.SQL(postgres_sql("order_id", conn.info.server_version)),  # type: ignore[arg-type]
                        sql.Identifier(MART_SCHEMA, mart)), (ds,)).fetchone()
                entries.append(Entry(ds, dataset, "mart", count, checksum, {"table": f"{MART_SCHEMA}.{mart}"}))
                continue
            m = measure(conn, MART_SCHEMA, mart, key, ds, ds_column="ds")
            entries.append(Entry(ds, dataset, "mart", m.row_count, m.key_checksum, {"table": m.table}))
    record(res, *entries)
    return store_and_raise(res, ds, results)
