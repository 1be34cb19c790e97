"""``ops.alerts``: one row per (DAG, ds, gate), the dedupe key, delivery status, acknowledgement.

A row is inserted ``ON CONFLICT DO NOTHING`` *before* anything is sent; only the caller whose
insert went in sends, so retries and re-runs of the same failure record another occurrence
(``occurrences``, ``last_seen_at``) but page nobody again. ``delivery`` holds, per channel,
``{"status": "pending" | "sent" | "failed", "detail" | "error", "at"}`` (never a secret).

An alert resolves itself when a later run of the same gate passes (:func:`resolve_passed`, called
by ``tally.gates.common`` once a gate's results are stored): ``resolved_at`` and a ``resolution``
note, ``resolved: <gate> passed in run <run_id> for ds <ds>``. A resolved alert is no longer open;
if the gate fails again, :func:`claim` opens the same row again and the alert is sent again.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tally.alerts.model import GATE_HOPS, Alert
from tally.core.pgutil import ensure_ddl

DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.alerts (
    id              bigserial   PRIMARY KEY,
    dag_id          text        NOT NULL,
    ds              date        NOT NULL,
    gate            text        NOT NULL,  -- a gate's task id (gate_mart...), land.gate_raw:<dataset>, or 'task:<task_id>'
    category        text        NOT NULL,  -- raw_gate, mart_gate, schema_drift, extract_failed, dbt_failed, ...
    title           text        NOT NULL,
    summary         text        NOT NULL,
    task_id         text,
    run_id          text,
    payload         jsonb       NOT NULL,  -- the alert as sent (what, where, observed vs expected, links)
    delivery        jsonb       NOT NULL DEFAULT '{}',
    occurrences     int         NOT NULL DEFAULT 1,
    last_run_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    note            text,
    CONSTRAINT alerts_once UNIQUE (dag_id, ds, gate)
);
-- added later; checked first, so that a table that has them is not locked by an ALTER
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'ops'
                   AND table_name = 'alerts' AND column_name = 'resolution') THEN
        ALTER TABLE ops.alerts ADD COLUMN IF NOT EXISTS resolved_at timestamptz,
                               ADD COLUMN IF NOT EXISTS resolution text;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS alerts_open ON ops.alerts (created_at DESC) WHERE acknowledged_at IS NULL;
"""
# the categories of a gate's alerts, which a later passing run of the gate resolves
GATE_CATEGORIES = [f"{hop}_gate" for hop in GATE_HOPS] + ["gate_failed", "schema_drift"]
_DDL_NAME = "ops.alerts+resolution"  # ensure_ddl runs once per name: the column added later runs too

COLUMNS = ("id", "dag_id", "ds", "gate", "category", "title", "summary", "task_id", "run_id", "payload",
           "delivery", "occurrences", "last_run_id", "created_at", "last_seen_at", "acknowledged_at",
           "acknowledged_by", "note", "resolved_at", "resolution")
_SELECT = sql.SQL("SELECT {} FROM ops.alerts").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def ensure(conn: psycopg.Connection) -> None:
    ensure_ddl(conn, _DDL_NAME, DDL)


def claim(conn: psycopg.Connection, alert: Alert, channels: list[str]) -> int | None:
    """Insert the alert's row unless (dag_id, ds, gate) already has one; return its id when
    this call inserted it (and so must send), else ``None`` after counting the repeat (the row
    then shows the repeat's title, summary and details: the latest failure). A row that
    was resolved (a later run of its gate passed) is opened again, as this alert, and its id
    returned: a failure after a recovery pages again."""
    ensure(conn)
    pending = {c: {"status": "pending"} for c in channels}
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO ops.alerts (dag_id, ds, gate, category, title, summary, task_id, run_id, payload, delivery,"
            " last_run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (dag_id, ds, gate) DO NOTHING RETURNING id",
            (alert.dag_id, alert.ds, alert.gate, alert.category, alert.title, alert.summary, alert.task_id,
             alert.run_id, Jsonb(alert.to_dict(), dumps=_dumps), Jsonb(pending), alert.run_id),
        ).fetchone()
        if row:
            return int(row[0])
        row = conn.execute(
            "UPDATE ops.alerts SET category = %s, title = %s, summary = %s, task_id = %s, run_id = %s, payload = %s,"
            " delivery = %s, occurrences = occurrences + 1, last_seen_at = now(), last_run_id = %s,"
            " acknowledged_at = NULL, acknowledged_by = NULL, note = NULL, resolved_at = NULL, resolution = NULL"
            " WHERE dag_id = %s AND ds = %s AND gate = %s AND resolved_at IS NOT NULL RETURNING id",
            (alert.category, alert.title, alert.summary, alert.task_id, alert.run_id,
             Jsonb(alert.to_dict(), dumps=_dumps), Jsonb(pending), alert.run_id, alert.dag_id, alert.ds, alert.gate),
        ).fetchone()
        if row:
            return int(row[0])
        # A repeat while open: counted, not sent again; what it shows is the latest failure (the
        # same gate can fail for another reason after a fix), delivery and acknowledgement kept.
        conn.execute(
            "UPDATE ops.alerts SET occurrences = occurrences + 1, last_seen_at = now(),"
            " last_run_id = coalesce(%s, last_run_id), category = %s, title = %s, summary = %s,"
            " task_id = %s, run_id = coalesce(%s, run_id), payload = %s"
            " WHERE dag_id = %s AND ds = %s AND gate = %s",
            (alert.run_id, alert.category, alert.title, alert.summary, alert.task_id, alert.run_id,
             Jsonb(alert.to_dict(), dumps=_dumps), alert.dag_id, alert.ds, alert.gate),
        )
    return None


def existing_id(conn: psycopg.Connection, alert: Alert) -> int | None:
    row = conn.execute("SELECT id FROM ops.alerts WHERE dag_id = %s AND ds = %s AND gate = %s",
                       (alert.dag_id, alert.ds, alert.gate)).fetchone()
    return int(row[0]) if row else None


def save_payload(conn: psycopg.Connection, alert_id: int, alert: Alert) -> None:
    conn.execute("UPDATE ops.alerts SET payload = %s WHERE id = %s", (Jsonb(alert.to_dict(), dumps=_dumps), alert_id))


def record_delivery(conn: psycopg.Connection, alert_id: int, channel: str, status: dict[str, Any]) -> None:
    conn.execute(
        "UPDATE ops.alerts SET delivery = delivery || jsonb_build_object(%s::text, %s::jsonb) WHERE id = %s",
        (channel, Jsonb(status, dumps=_dumps), alert_id),
    )


def list_alerts(conn: psycopg.Connection, *, include_acknowledged: bool = False, ds: str | None = None,
                dag_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first; open ones only unless ``include_acknowledged``."""
    ensure(conn)
    where = [sql.SQL("TRUE")]
    if not include_acknowledged:  # open: neither acknowledged nor resolved
        where.append(sql.SQL("acknowledged_at IS NULL AND resolved_at IS NULL"))
    if ds:
        where.append(sql.SQL("ds = {}").format(sql.Literal(ds)))
    if dag_id:
        where.append(sql.SQL("dag_id = {}").format(sql.Literal(dag_id)))
    query = sql.SQL("{} WHERE {} ORDER BY created_at DESC, id DESC LIMIT {}").format(
        _SELECT, sql.SQL(" AND ").join(where), sql.Literal(int(limit)))
    rows = conn.execute(query).fetchall()
    return [_row(r) for r in rows]


def get(conn: psycopg.Connection, alert_id: int) -> dict[str, Any] | None:
    ensure(conn)
    row = conn.execute(sql.SQL("{} WHERE id = %s").format(_SELECT), (alert_id,)).fetchone()
    return _row(row) if row else None


def acknowledge(conn: psycopg.Connection, alert_id: int, by: str, note: str | None = None
                ) -> tuple[str, dict[str, Any] | None]:
    """Mark an alert handled. Returns ``("acknowledged", row)``, ``("already", row)`` (an earlier
    acknowledgement is kept) or ``("missing", None)``."""
    ensure(conn)
    with conn.transaction():
        row = conn.execute(
            sql.SQL("UPDATE ops.alerts SET acknowledged_at = now(), acknowledged_by = %s, note = %s"
                    " WHERE id = %s AND acknowledged_at IS NULL RETURNING {}").format(
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS))),
            (by, note, alert_id),
        ).fetchone()
    if row:
        return "acknowledged", _row(row)
    current = get(conn, alert_id)
    return ("already", current) if current else ("missing", None)


def resolve_passed(conn: psycopg.Connection, ds: str, results: list, run_id: str | None) -> list[tuple[int, str]]:
    """Resolve the unresolved gate alerts of ``ds`` that a run of their gate, whose ``results``
    (``GateResult``s or their dicts) were just stored, shows passed: every suite an alert names
    passed in ``results``; an alert naming no suite (the gate could not run) is resolved when
    every result of its hop passed. Returns (id, note) of each alert resolved (committed)."""
    ensure(conn)
    outcome: dict[str, bool] = {}  # suite -> passed
    hops: dict[str, bool] = {}  # hop -> every result of it passed
    for r in results:
        suite, hop, ok = (r["suite"], r["hop"], bool(r["success"])) if isinstance(r, dict) else (
            r.suite, r.hop, bool(r.success))
        outcome[suite] = outcome.get(suite, True) and ok
        hops[hop] = hops.get(hop, True) and ok
    if not outcome:
        return []
    done: list[tuple[int, str]] = []
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, gate, category, payload->'suites', payload->>'hop' FROM ops.alerts"
            " WHERE ds = %s AND resolved_at IS NULL AND category = ANY(%s)",
            (ds, GATE_CATEGORIES),
        ).fetchall()
        for alert_id, gate, category, suites, hop in rows:
            suites = [s for s in (suites or []) if isinstance(s, str)]
            if suites:
                passed = all(outcome.get(s) is True for s in suites)
            else:
                hop = hop or category.removesuffix("_gate")
                passed = hops.get(hop) is True
            if not passed:
                continue
            note = f"resolved: {gate} passed in run {run_id or '(no run id)'} for ds {ds}"
            conn.execute("UPDATE ops.alerts SET resolved_at = now(), resolution = %s WHERE id = %s",
                         (note, alert_id))
            done.append((int(alert_id), note))
    return done


def _row(row: tuple) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    out["ds"] = str(out["ds"])
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
