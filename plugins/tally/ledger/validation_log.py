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
    ensure_ddl(conn, "ops.validation_results", DDL)
    rows = conn.execute(
        "SELECT DISTINCT ON (hop, dataset) hop, dataset, suite, success, evaluated, failed, summary"
        " FROM ops.validation_results WHERE ds = %s ORDER BY hop, dataset, run_at DESC",
        (ds,),
    ).fetchall()
    keys = ("hop", "dataset", "suite", "success", "evaluated", "failed", "summary")
    return [dict(zip(keys, r, strict=True)) for r in rows]
