"""What a stage runs against (the lake, the warehouse, the sources) and the checks every stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tally.core.config import PostgresConn, SalesforceConn
from tally.core.dates import parse_ds

if TYPE_CHECKING:
    import psycopg

    from tally.lake import Lake
    from tally.ledger import Entry


@dataclass
class Resources:
    lake: Lake
    warehouse: PostgresConn
    erp: PostgresConn | None = None
    salesforce: SalesforceConn | None = None
    run_id: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


def check_ds(ds: str) -> str:
    """``ds`` if it is a ds (``YYYY-MM-DD``, a real date), else ``InputError`` (a ``ValueError``)."""
    return parse_ds(ds)


def record(res: Resources, *entries: Entry, conn: psycopg.Connection | None = None) -> None:
    """Ledger entries, committed (on ``conn`` if given, else on a connection of their own)."""
    import psycopg

    from tally import ledger

    if conn is None:
        with psycopg.connect(res.warehouse.conninfo()) as own:
            record(res, *entries, conn=own)
        return
    for e in entries:
        ledger.record(conn, e)
    conn.commit()
