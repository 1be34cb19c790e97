"""The row ledger (``ops.ledger``): row count and key checksum of every dataset at every hop.

Hops, in flow order: source → raw → curated → warehouse → mart. One row per
(ds, dataset, hop); re-running a hop replaces its row. ``flow(ds)`` returns the table that
`tally reconcile` prints, and ``first_divergence`` names where rows were lost.

The ``source`` hop's row count is what the raw zone must hold (the source's count, plus
tombstones, minus quarantined rows: ``tally.stages.extract.expected_raw_rows``), so that hops
compare like with like. What the source itself counted is told apart by :func:`accounting`:
source count, landed, quarantined and tombstones of a landed dataset, from its ``source`` and
``raw`` entries (``accounting_of(conn, ds)`` for every dataset of a ds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

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


# The accounting of a landed dataset: (record field, column header), in the order shown
ACCOUNTING = (("source_count", "source count"), ("landed", "landed"), ("quarantined", "quarantined"),
              ("tombstones", "tombstones"))


@dataclass(frozen=True)
class Accounting:
    """Where every row the source counted for a ds went: ``source_count`` (the source's own count
    for the interval, rows with a NULL key included) = ``landed`` (rows in the raw zone, tombstones
    not counted) + ``quarantined`` (set aside with a reason); ``tombstones`` (keys deleted at the
    source) land in the raw zone beside the rows."""

    source_count: int
    landed: int
    quarantined: int
    tombstones: int

    @property
    def balanced(self) -> bool:
        return self.source_count == self.landed + self.quarantined

    def as_record(self) -> dict[str, int]:
        return asdict(self)

    def cells(self) -> list[str]:
        """The four numbers for a table, ``1,234`` style, in :data:`ACCOUNTING` order."""
        return [f"{getattr(self, name):,}" for name, _ in ACCOUNTING]


def accounting(hops: Mapping[str, Entry]) -> Accounting | None:
    """The :class:`Accounting` of one dataset's hops (``flow(conn, ds)[dataset]``), from its
    ``source`` entry (a source that quarantines or finds deletes records ``source_count``,
    ``quarantined`` and ``tombstones`` in its details; one that does neither counts exactly the
    rows to land) and its ``raw`` entry (rows in the raw zone, tombstones included). ``None`` for
    a dataset that is not landed from a source (curated, marts)."""
    source, raw = hops.get("source"), hops.get("raw")
    if source is None:
        return None
    details = source.details or {}
    tombstones = int(details.get("tombstones") or 0)
    quarantined = int(details.get("quarantined") or 0)
    source_count = details.get("source_count")
    if source_count is None:  # rows to land = source count + tombstones - quarantined
        source_count = source.row_count - tombstones + quarantined
    in_raw = raw.row_count if raw is not None else source.row_count
    return Accounting(source_count=int(source_count), landed=in_raw - tombstones, quarantined=quarantined,
                      tombstones=tombstones)


def accounting_of(conn: psycopg.Connection, ds: str) -> dict[str, Accounting]:
    """{dataset: :class:`Accounting`} of every dataset landed from a source for ``ds``."""
    out = {}
    for dataset, hops in flow(conn, ds).items():
        acc = accounting(hops)
        if acc is not None:
            out[dataset] = acc
    return out
