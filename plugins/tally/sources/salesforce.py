"""Salesforce extraction with simple-salesforce: one object, one data interval, to the lake.

The interval is ``[start, end)`` on ``SystemModstamp`` (``>=`` and ``<``: no strict ``>`` on a
non-unique timestamp, so records sharing the edge second belong to exactly one interval).
``queryAll`` is used so deleted records land as tombstones (``IsDeleted = true``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import requests
from simple_salesforce import Salesforce

from tally import sfid
from tally.catalog import Dataset
from tally.config import SalesforceConn
from tally.lake import Lake, arrow_schema
from tally.landing import batches_from_rows, interval_start, land
from tally.sources.salesforce_auth import VerifyingSession, login


def soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def where_clause(dataset: Dataset, start: datetime | None, end: datetime) -> str:
    cond = [f"{dataset.cursor} < {soql_datetime(end)}"]
    if start is not None:
        cond.insert(0, f"{dataset.cursor} >= {soql_datetime(start)}")
    return " AND ".join(cond)


def parse_datetime(value: str) -> datetime:
    # Salesforce: 2026-11-20T10:15:00.000+0000
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def convert(dataset: Dataset, record: dict) -> dict:
    """A Salesforce JSON record -> a typed row (IDs in 18-char form, money as Decimal)."""
    row = {}
    for f in dataset.fields:
        value = record.get(f.name)
        if value is None:
            row[f.name] = None
        elif f.type == "id":
            row[f.name] = sfid.to18(value)
        elif f.type == "datetime":
            row[f.name] = parse_datetime(value)
        elif f.type == "date":
            row[f.name] = date.fromisoformat(value)
        elif f.type == "decimal":
            row[f.name] = Decimal(str(value))
        elif f.type == "double":
            row[f.name] = float(value)
        elif f.type == "int":
            row[f.name] = int(value)
        else:
            row[f.name] = value
    return row


class SalesforceSource:
    def __init__(self, conn: SalesforceConn) -> None:
        self.conn = conn
        # requests ignores Session.verify when REQUESTS_CA_BUNDLE is set (requests#3829).
        self.session = VerifyingSession(conn.ca_bundle) if conn.ca_bundle else requests.Session()
        self._sf: Salesforce | None = None

    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            session_id, instance_url = login(
                self.conn.login_url, self.conn.username, self.conn.password, self.conn.security_token,
                api_version=self.conn.api_version, session=self.session,
            )
            self._sf = Salesforce(instance_url=instance_url, session_id=session_id, session=self.session,
                                  version=self.conn.api_version)
        return self._sf

    def count(self, dataset: Dataset, start: datetime | None, end: datetime) -> int:
        soql = f"SELECT COUNT() FROM {dataset.name} WHERE {where_clause(dataset, start, end)}"
        # query_all() rewrites totalSize to len(records), which is 0 for COUNT(): use query().
        return int(self.sf.query(soql, include_deleted=True)["totalSize"])

    def records(self, dataset: Dataset, start: datetime | None, end: datetime) -> Iterator[dict]:
        soql = (f"SELECT {', '.join(dataset.field_names)} FROM {dataset.name} "
                f"WHERE {where_clause(dataset, start, end)} ORDER BY {dataset.cursor}, Id")
        for record in self.sf.query_all_iter(soql, include_deleted=True):
            yield convert(dataset, record)

    def extract(self, lake: Lake, dataset: Dataset, ds: str, start: datetime, end: datetime) -> dict:
        """Land ``dataset`` for ``[start, end)`` as partition ``ds``; returns the manifest."""
        since, mode = interval_start(lake, dataset, ds, start)
        source_count = self.count(dataset, since, end)
        rows = self.records(dataset, since, end)
        return land(
            lake, dataset, ds, batches_from_rows(rows, arrow_schema(dataset)),
            source_count=source_count,
            watermark={"column": dataset.cursor, "start": since.isoformat() if since else None,
                       "end": end.isoformat()},
            mode=mode,
        )
