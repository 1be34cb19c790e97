"""``ops.validation_results``: every gate outcome, pass or fail, for on-call and audits; a passed
suite's warnings (failed expectations of severity ``warn``) are kept beside its failures."""

from __future__ import annotations

import json

import psycopg

from tally.core.pgutil import ensure_ddl

DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.validation_results (
    id         bigserial PRIMARY KEY,
    ds         date        NOT NULL,
    hop        text        NOT NULL,
    dataset    text        NOT NULL,
    suite      text        NOT NULL,
    success    boolean     NOT NULL,
    evaluated  int         NOT NULL,
    failed     int         NOT NULL,
    summary    text        NOT NULL,
    failures   jsonb       NOT NULL DEFAULT '[]',
    run_id     text,
    run_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS validation_results_ds ON ops.validation_results (ds, hop, dataset);
-- added later; checked first, so that a table that has it is not locked by an ALTER
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'ops'
                   AND table_name = 'validation_results' AND column_name = 'warnings') THEN
        ALTER TABLE ops.validation_results ADD COLUMN warnings jsonb NOT NULL DEFAULT '[]';
    END IF;
END $$;
"""
_DDL_NAME = "ops.validation_results+warnings"  # ensure_ddl runs once per name: the added column runs too


def store(conn: psycopg.Connection, ds: str, result, run_id: str | None = None) -> None:
    """Insert one gate result (a ``tally.quality.result.GateResult``)."""
    ensure_ddl(conn, _DDL_NAME, DDL)
    conn.execute(
        "INSERT INTO ops.validation_results (ds, hop, dataset, suite, success, evaluated, failed, summary,"
        " failures, run_id, warnings) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (ds, result.hop, result.dataset, result.suite, result.success, result.evaluated, result.failed,
         result.summary(), json.dumps(result.failures, default=str), run_id,
         json.dumps(getattr(result, "warnings", []), default=str)),
    )


def latest(conn: psycopg.Connection, ds: str) -> list[dict]:
    """The gate summary of ``ds``: one row per (hop, dataset), aggregating the latest result of
    every suite of that dataset (``raw.*`` and ``schema.*`` run together), failures first
    (:func:`summarise`)."""
    ensure_ddl(conn, _DDL_NAME, DDL)
    rows = conn.execute(
        "SELECT DISTINCT ON (hop, dataset, suite) hop, dataset, suite, success, evaluated, failed, summary, warnings"
        " FROM ops.validation_results WHERE ds = %s ORDER BY hop, dataset, suite, run_at DESC, id DESC",
        (ds,),
    ).fetchall()
    keys = ("hop", "dataset", "suite", "success", "evaluated", "failed", "summary", "warnings")
    return summarise([dict(zip(keys, r, strict=True)) for r in rows])


HOP_ORDER = ("raw", "schema", "curated", "warehouse", "mart", "reconcile")


def summarise(results: list[dict]) -> list[dict]:
    """One row per (hop, dataset) from per-suite rows (``hop``, ``dataset``, ``suite``,
    ``success``, ``evaluated``, ``failed``, ``summary``): failed when any of its suites failed,
    ``evaluated`` and ``failed`` summed over the suites, ``suites`` named (failed ones first),
    ``summary`` the failed suites' summaries (empty when all passed), ``warnings`` the number of
    failed ``warn``-severity expectations over its suites and ``warning_summary`` what they found
    (``raw.erp.payments: 1 warning: expect_… e.g. payment_id 2 (amount …)``; empty without any).
    Failed rows come first, then by hop along the pipeline and dataset."""
    from tally.quality.result import describe_failure, warning_count

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["hop"], r["dataset"]), []).append(r)
    out = []
    for (hop, dataset), rows in groups.items():
        rows = sorted(rows, key=lambda r: (bool(r["success"]), r["suite"]))
        failed_rows = [r for r in rows if not r["success"]]
        suites = [r["suite"] for r in rows]
        out.append({
            "hop": hop, "dataset": dataset, "suite": ", ".join(suites), "suites": suites,
            "success": not failed_rows,
            "evaluated": sum(int(r["evaluated"] or 0) for r in rows),
            "failed": sum(int(r["failed"] or 0) for r in rows),
            "failed_suites": [r["suite"] for r in failed_rows],
            "summary": "; ".join(str(r["summary"]) for r in failed_rows),
            "warnings": sum(len(r.get("warnings") or []) for r in rows),
            "warning_summary": "; ".join(
                f"{r['suite']}: {warning_count(r['warnings']).removeprefix(', ')}: "
                + "; ".join(describe_failure(w) for w in r["warnings"]) for r in rows if r.get("warnings")),
        })

    def order(row: dict) -> tuple:
        hop = HOP_ORDER.index(row["hop"]) if row["hop"] in HOP_ORDER else len(HOP_ORDER)
        return (row["success"], hop, row["hop"], row["dataset"])

    return sorted(out, key=order)
