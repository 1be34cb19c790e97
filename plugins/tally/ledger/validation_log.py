"""``ops.validation_results``: every gate outcome, pass or fail, for on-call and audits."""

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
"""


def store(conn: psycopg.Connection, ds: str, result, run_id: str | None = None) -> None:
    """Insert one gate result (a ``tally.quality.result.GateResult``)."""
    ensure_ddl(conn, "ops.validation_results", DDL)
    conn.execute(
        "INSERT INTO ops.validation_results (ds, hop, dataset, suite, success, evaluated, failed, summary,"
        " failures, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (ds, result.hop, result.dataset, result.suite, result.success, result.evaluated, result.failed,
         result.summary(), json.dumps(result.failures, default=str), run_id),
    )


def latest(conn: psycopg.Connection, ds: str) -> list[dict]:
    """The gate summary of ``ds``: one row per (hop, dataset), aggregating the latest result of
    every suite of that dataset (``raw.*`` and ``schema.*`` run together), failures first
    (:func:`summarise`)."""
    ensure_ddl(conn, "ops.validation_results", DDL)
    rows = conn.execute(
        "SELECT DISTINCT ON (hop, dataset, suite) hop, dataset, suite, success, evaluated, failed, summary"
        " FROM ops.validation_results WHERE ds = %s ORDER BY hop, dataset, suite, run_at DESC, id DESC",
        (ds,),
    ).fetchall()
    keys = ("hop", "dataset", "suite", "success", "evaluated", "failed", "summary")
    return summarise([dict(zip(keys, r, strict=True)) for r in rows])


HOP_ORDER = ("raw", "schema", "curated", "warehouse", "mart", "reconcile")


def summarise(results: list[dict]) -> list[dict]:
    """One row per (hop, dataset) from per-suite rows (``hop``, ``dataset``, ``suite``,
    ``success``, ``evaluated``, ``failed``, ``summary``): failed when any of its suites failed,
    ``evaluated`` and ``failed`` summed over the suites, ``suites`` named (failed ones first),
    ``summary`` the failed suites' summaries (empty when all passed). Failed rows come first,
    then by hop along the pipeline and dataset."""
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
        })

    def order(row: dict) -> tuple:
        hop = HOP_ORDER.index(row["hop"]) if row["hop"] in HOP_ORDER else len(HOP_ORDER)
        return (row["success"], hop, row["hop"], row["dataset"])

    return sorted(out, key=order)
