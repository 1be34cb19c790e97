"""The row ledger (``ops.ledger``): row count and key checksum of every dataset at every hop.

Hops, in flow order: source → raw → curated → warehouse → mart. One row per
(ds, dataset, hop); re-running a hop replaces its row. ``flow(ds)`` returns the table that
`tally reconcile` prints, and ``first_divergence`` names where rows were lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg

from tally.core.pgutil import ensure_ddl

HOPS = ("source", "raw", "curated", "warehouse", "mart")

DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.ledger (
    ds           date        NOT NULL,
    dataset      text        NOT NULL,
    hop          text        NOT NULL CHECK (hop IN ('source', 'raw', 'curated', 'warehouse', 'mart')),
    row_count    bigint      NOT NULL,
    key_checksum text,
    details      jsonb       NOT NULL DEFAULT '{}',
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ds, dataset, hop)
);
"""


@dataclass(frozen=True)
class Entry:
    ds: str
    dataset: str
    hop: str
    row_count: int
    key_checksum: str | None
    details: dict


def ensure(conn: psycopg.Connection) -> None:
    ensure_ddl(conn, "ops.ledger", DDL)


def record(conn: psycopg.Connection, entry: Entry) -> None:
    ensure(conn)
    conn.execute(
        """
        INSERT INTO ops.ledger (ds, dataset, hop, row_count, key_checksum, details)
        VALUES (%s, %s, %s, %s, %s, %s)
        ON CONFLICT (ds, dataset, hop) DO UPDATE
        SET row_count = EXCLUDED.row_count, key_checksum = EXCLUDED.key_checksum,
            details = EXCLUDED.details, recorded_at = now()
        """,
        (entry.ds, entry.dataset, entry.hop, entry.row_count, entry.key_checksum,
         json.dumps(entry.details, default=str)),
    )


def entries(conn: psycopg.Connection, ds: str) -> list[Entry]:
    ensure(conn)
    rows = conn.execute(
        "SELECT ds::text, dataset, hop, row_count, key_checksum, details FROM ops.ledger WHERE ds = %s",
        (ds,),
    ).fetchall()
    order = {h: i for i, h in enumerate(HOPS)}
    out = [Entry(*r) for r in rows]
    return sorted(out, key=lambda e: (e.dataset, order[e.hop]))


def flow(conn: psycopg.Connection, ds: str) -> dict[str, dict[str, Entry]]:
    """{dataset: {hop: entry}} for one ds."""
    table: dict[str, dict[str, Entry]] = {}
    for e in entries(conn, ds):
        table.setdefault(e.dataset, {})[e.hop] = e
    return table


def first_divergence(hops: dict[str, Entry]) -> tuple[str, str, str] | None:
    """(from_hop, to_hop, why) for the first consecutive pair of recorded hops that disagree."""
    present = [h for h in HOPS if h in hops]
    for a, b in zip(present, present[1:], strict=False):
        ea, eb = hops[a], hops[b]
        if ea.row_count != eb.row_count:
            return a, b, f"row count {ea.row_count} -> {eb.row_count}"
        if ea.key_checksum and eb.key_checksum and ea.key_checksum != eb.key_checksum:
            return a, b, f"key checksum {ea.key_checksum} -> {eb.key_checksum}"
    return None
