"""Salesforce extraction throughput against the simulator, beside the raw HTTP limit.

For the REST and the Bulk API 2.0 paths, in the same run:

* limit: the same pages fetched raw over HTTP (requests + JSON/CSV decode, nothing else);
* tally: ``SalesforceSource.extract`` landing the same rows in a local lake (typed, 18-char
  IDs, Parquet, manifest).

Prints records/s for each and the ratios; the last line is
``salesforce_extract: rest_ratio=… bulk_ratio=…``.

    .venv/bin/python bench/salesforce_extract.py --rows 100000
"""

from __future__ import annotations

import argparse
import csv
import io
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table

from tally import catalog, sfid
from tally.core.config import SalesforceConn
from tally.lake import Lake
from tally.sources.salesforce.auth import VerifyingSession, login
from tally.sources.salesforce.extract import SalesforceOptions, SalesforceSource, where_clause
from tally_local.sfsim import SalesforceStore, generate_credentials, start_in_thread

OPP = catalog.SALESFORCE["Opportunity"]
DAY = datetime(2026, 6, 1, tzinfo=UTC)


def seed(store: SalesforceStore, rows: int) -> None:
    batch = []
    for i in range(rows):
        batch.append({
            "Id": sfid.make("006", i), "Name": f"Deal {i}", "AccountId": sfid.make("001", i % 5000),
            "OwnerId": sfid.make("005", i % 40), "StageName": "Prospecting", "Amount": Decimal(i % 100000) / 4,
            "Probability": 10.0, "CloseDate": DAY.date(), "IsClosed": False, "IsWon": False,
            "CurrencyIsoCode": "USD", "IsDeleted": False, "CreatedDate": DAY,
            "SystemModstamp": DAY + timedelta(microseconds=i * 800_000 // max(rows // 100_000, 1)),
        })
        if len(batch) == 20_000:
            store.upsert("Opportunity", batch)
            batch = []
    if batch:
        store.upsert("Opportunity", batch)


def raw_rest(base: str, session: requests.Session, token: str, soql: str) -> int:
    headers = {"Authorization": f"Bearer {token}", "Sforce-Query-Options": "batchSize=2000"}
    page = session.get(f"{base}/services/data/v62.0/queryAll", params={"q": soql}, headers=headers).json()
    n = len(page["records"])
    while not page["done"]:
        page = session.get(base + page["nextRecordsUrl"], headers=headers).json()
        n += len(page["records"])
    return n


def raw_bulk(base: str, session: requests.Session, token: str, soql: str, page: int) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{base}/services/data/v62.0/jobs/query"
    job = session.post(api, json={"operation": "queryAll", "query": soql}, headers=headers).json()
    while session.get(f"{api}/{job['id']}", headers=headers).json()["state"] != "JobComplete":
        time.sleep(0.05)
    n, locator = 0, None
    while True:
        params = {"maxRecords": page, **({"locator": locator} if locator else {})}
        r = session.get(f"{api}/{job['id']}/results", params=params, headers=headers)
        n += sum(1 for _ in csv.DictReader(io.StringIO(r.text)))
        locator = r.headers.get("Sforce-Locator")
        if not locator or locator == "null":
            return n


def timed(fn):
    t0 = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bulk-page", type=int, default=50_000)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = SalesforceStore(root / "store.db")
        with console.status(f"seeding {args.rows:,} opportunities"):
            seed(store, args.rows)
        creds = generate_credentials()
        server, base = start_in_thread(root / "store.db", creds)
        try:
            session = VerifyingSession(str(server.certfile))
            token, _ = login(base, creds.username, creds.password, creds.security_token, session=session)
            fields, window = ", ".join(OPP.field_names), where_clause(OPP, None, DAY + timedelta(days=1))
            soql = f"SELECT {fields} FROM Opportunity WHERE {window}"  # noqa: S608 (SOQL, not SQL)
            conn = SalesforceConn(base, creds.username, creds.password, creds.security_token,
                                  ca_bundle=str(server.certfile))
            results = {}
            # Warm up imports and the TLS session so neither side pays them inside the timing.
            SalesforceSource(conn, SalesforceOptions()).extract(Lake(str(root / "warm")), OPP, "2000-01-01",
                                                              DAY - timedelta(days=1), DAY)
            raw_rest(base, session, token, soql.replace("SystemModstamp <", "SystemModstamp < 2000-01-01T00:00:00Z AND SystemModstamp <"))
            for path in ("rest", "bulk"):
                with console.status(f"{path}: raw HTTP"):
                    if path == "rest":
                        n_raw, t_raw = timed(lambda: raw_rest(base, session, token, soql))
                    else:
                        n_raw, t_raw = timed(lambda: raw_bulk(base, session, token, soql, args.bulk_page))
                options = SalesforceOptions(force_bulk=frozenset({"Opportunity"}) if path == "bulk" else frozenset(),
                                            bulk_threshold=10**12, bulk_page_records=args.bulk_page)
                lake = Lake(str(root / f"lake-{path}"))
                with console.status(f"{path}: tally extract"):
                    m, t_tally = timed(lambda o=options, lk=lake: SalesforceSource(conn, o).extract(
                        lk, OPP, DAY.date().isoformat(), DAY, DAY + timedelta(days=1)))
                assert n_raw == m["row_count"] == args.rows, (n_raw, m["row_count"])
                results[path] = (args.rows / t_raw, args.rows / t_tally)
        finally:
            server.stop()
    table = Table(title=f"Salesforce extract, {args.rows:,} opportunities (simulator, loopback HTTPS)")
    for col in ("path", "raw HTTP rec/s (limit)", "tally rec/s", "ratio"):
        table.add_column(col, justify="right")
    for path, (limit, tally) in results.items():
        table.add_row(path, f"{limit:,.0f}", f"{tally:,.0f}", f"{tally / limit:.2f}")
    console.print(table)
    rest, bulk = results["rest"], results["bulk"]
    print(f"salesforce_extract: rest_ratio={rest[1] / rest[0]:.2f} bulk_ratio={bulk[1] / bulk[0]:.2f}")


if __name__ == "__main__":
    main()
