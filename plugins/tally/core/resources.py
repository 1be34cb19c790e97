"""What a stage runs against (the lake, the warehouse, the sources) and the checks every stage shares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from tally.core.config import PostgresConn, SalesforceConn

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
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", ds):
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}")
    date.fromisoformat(ds)
    return ds


def ds_interval(ds: str) -> tuple[datetime, datetime]:
    """The data interval of a ds: its UTC day, ``[ds 00:00, ds+1 00:00)``."""
    start = datetime.combine(date.fromisoformat(ds), time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


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
