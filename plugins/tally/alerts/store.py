"""``ops.alerts``: one row per (DAG, ds, gate), the dedupe key, delivery status, acknowledgement.

A row is inserted ``ON CONFLICT DO NOTHING`` *before* anything is sent; only the caller whose
insert went in sends, so retries and re-runs of the same failure record another occurrence
(``occurrences``, ``last_seen_at``) but page nobody again. ``delivery`` holds, per channel,
``{"status": "pending" | "sent" | "failed", "detail" | "error", "at"}`` (never a secret).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from tally.alerts.model import Alert
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
CREATE INDEX IF NOT EXISTS alerts_open ON ops.alerts (created_at DESC) WHERE acknowledged_at IS NULL;
"""

COLUMNS = ("id", "dag_id", "ds", "gate", "category", "title", "summary", "task_id", "run_id", "payload",
           "delivery", "occurrences", "last_run_id", "created_at", "last_seen_at", "acknowledged_at",
           "acknowledged_by", "note")
_SELECT = sql.SQL("SELECT {} FROM ops.alerts").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def ensure(conn: psycopg.Connection) -> None:
    ensure_ddl(conn, "ops.alerts", DDL)


def claim(conn: psycopg.Connection, alert: Alert, channels: list[str]) -> int | None:
    """Insert the alert's row unless (dag_id, ds, gate) already has one; return its id when
    this call inserted it (and so must send), else ``None`` after counting the repeat."""
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
        conn.execute(
            "UPDATE ops.alerts SET occurrences = occurrences + 1, last_seen_at = now(),"
            " last_run_id = coalesce(%s, last_run_id) WHERE dag_id = %s AND ds = %s AND gate = %s",
            (alert.run_id, alert.dag_id, alert.ds, alert.gate),
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
    if not include_acknowledged:
        where.append(sql.SQL("acknowledged_at IS NULL"))
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


def _row(row: tuple) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    out["ds"] = str(out["ds"])
    return out


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
