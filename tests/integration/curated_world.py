"""A tiny raw lake that exercises every curated rule, and an independent Python model of the
curated zone it implies (docs/curated.md), shared by the Spark job tests.

Covered: two versions of a record across ds (and a SystemModstamp tie: the greater ds wins),
tombstones (Salesforce IsDeleted, ERP ``_deleted``), a missing account / owner, NULL region,
ERP references in every messy form (18-char, 15-char, wrong case, blank, missing, a deleted
account, a lower-cased 15-char id, garbage), effective-dated FX ranges with a date on a range
boundary and a date no range covers, several customers on one account, orders linked through
every reference form, duplicate and late events, events of unknown accounts, and noise that
must be ignored (a committed ds after the run's ds, an uncommitted ds, a stray file).
"""

from __future__ import annotations

import importlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tally import catalog, sfid
from tally.lake import Lake, PartitionWriter, arrow_schema, schema_fingerprint
from tally.lake.checksum import checksum
from tally.lake.writer import remove_partition
from tally.sources.kafka.schema import EVENT_SCHEMA
from tally_local.generator import to_reporting

DS1, DS2, DS3 = "2024-03-30", "2024-03-31", "2024-04-01"
RUN_DS = DS2
UNCOMMITTED = "2024-03-29"


def load_job(name: str):
    """A spark_jobs/ module (on the path through pyproject's pytest ``pythonpath``, as
    ``--py-files`` puts it under spark-submit)."""
    return importlib.import_module(name)


def t(day: int, hour: int = 0, month: int = 3) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


U = {n: sfid.make("005", 1000 + n) for n in range(1, 7)}
A = {n: sfid.make("001", 5000 + n) for n in range(1, 6)}
OP = {n: sfid.make("006", 90000 + n) for n in range(1, 13)}
assert any(c.isupper() for c in A[4][3:15]), "A4 needs an upper-case letter for the wrong-case 15-char case"


def usr(n, name, region, ts):
    return {"Id": U[n], "Name": name, "Email": f"{name.lower()}@x.test", "IsActive": True, "Region__c": region,
            "CreatedDate": t(1), "SystemModstamp": ts}


def acc(n, name, ts, deleted=False):
    return {"Id": A[n], "Name": name, "BillingCountry": "DE", "Industry": "Tech", "OwnerId": U[1],
            "IsDeleted": deleted, "CreatedDate": t(1), "SystemModstamp": ts}


def opp(n, account, owner, stage, amount, currency, close, ts, prob=None, deleted=False):
    won, closed = stage == "Closed Won", stage.startswith("Closed")
    return {"Id": OP[n], "Name": f"Deal {n}", "AccountId": account and A.get(account, sfid.make("001", account)),
            "OwnerId": owner and U.get(owner, sfid.make("005", owner)),
            "StageName": stage, "Amount": None if amount is None else Decimal(amount),
            "Probability": prob if prob is not None else (100.0 if won else 0.0 if closed else 50.0),
            "CloseDate": close, "IsClosed": closed, "IsWon": won, "CurrencyIsoCode": currency,
            "IsDeleted": deleted, "CreatedDate": t(1), "SystemModstamp": ts}


def rate(n, iso, value, start, nxt, ts=None):
    return {"Id": sfid.make("04w", 7000 + n), "IsoCode": iso, "ConversionRate": value, "StartDate": start,
            "NextStartDate": nxt, "CreatedDate": t(1), "SystemModstamp": ts or t(1)}


def cust(cid, ref, ts, deleted=False):
    return {"customer_id": cid, "name": f"CUSTOMER {cid}", "country": "DE", "sf_account_ref": ref,
            "created_at": t(1), "updated_at": ts, "_deleted": deleted}


def order(oid, cid, ref, currency, amount, day, ts, deleted=False):
    return {"order_id": oid, "customer_id": cid, "order_date": day, "status": "shipped", "currency": currency,
            "total_amount": Decimal(amount), "created_at": t(1), "updated_at": ts, "sf_opportunity_ref": ref,
            "_deleted": deleted}


D = date
RAW: dict[str, dict[str, list[dict]]] = {
    "salesforce.User": {
        DS1: [usr(1, "Alice", "EMEA", t(30)), usr(2, "Bob", "EMEA", t(30)), usr(3, "Carol", "EMEA", t(30)),
              usr(4, "Dan", None, t(30)), usr(5, "Erin", "AMER", t(30))],
        DS2: [usr(2, "Bob B.", "EMEA", t(30)), usr(6, "Fay", "APAC", t(31))],  # Bob: modstamp tie, ds2 wins
    },
    "salesforce.Account": {
        DS1: [acc(1, "Acme", t(30)), acc(2, "Globex", t(30)), acc(3, "Initech", t(30)), acc(4, "Umbrella", t(30))],
        DS2: [acc(3, "Initech", t(31), deleted=True), acc(2, "Globex Corp", t(31)), acc(5, "Hooli", t(31))],
        DS3: [acc(5, "Hooli", t(1, month=4), deleted=True)],  # after the run's ds: ignored
    },
    "salesforce.Opportunity": {
        DS1: [
            opp(1, 1, 1, "Prospecting", "100", "USD", D(2024, 2, 10), t(30)),
            opp(2, 2, 2, "Closed Won", "200", "EUR", D(2024, 2, 1), t(30)),  # on a range boundary
            opp(3, 1, 3, "Closed Won", "50", "USD", D(2024, 1, 15), t(30)),
            opp(4, 1, 999, "Closed Won", "75", "GBP", D(2024, 3, 15), t(30)),  # owner missing; no GBP rate
        ],
        DS2: [
            opp(1, 1, 1, "Closed Won", "150", "USD", D(2024, 2, 10), t(31)),  # second version
            opp(3, 1, 3, "Closed Won", "50", "USD", D(2024, 1, 15), t(31), deleted=True),  # tombstone
            opp(5, 3, 4, "Closed Lost", "30", "JPY", D(2024, 2, 20), t(31)),  # account deleted
            opp(6, 42, 4, "Negotiation/Review", "40.5", "EUR", D(2024, 1, 31), t(31), prob=75.0),  # no account
            opp(7, 2, 2, "Closed Won", "0", "USD", D(2024, 2, 11), t(31)),  # zero amount: counted, not summed
            opp(8, 4, 5, "Closed Won", "10.123456789", "AUD", D(2024, 2, 5), t(31)),
            opp(9, None, None, "Prospecting", "5", "USD", D(2024, 2, 5), t(31)),  # no owner: skipped
            opp(10, 4, 6, "Prospecting", "300", "USD", None, t(31), prob=10.0),  # no close date: skipped
            opp(11, 2, 1, "Qualification", "90", "USD", D(2024, 2, 28), t(31), prob=89.0),  # open pipeline
            opp(12, 4, 2, "Proposal/Price Quote", "60", "USD", D(2024, 2, 28), t(31), prob=90.0),  # not pipeline
        ],
    },
    "salesforce.DatedConversionRate": {
        DS1: [
            rate(1, "EUR", 0.9, D(2024, 1, 1), D(2024, 2, 1)),
            rate(2, "EUR", 0.8, D(2024, 2, 1), None),
            rate(3, "GBP", 0.75, D(2024, 1, 1), D(2024, 3, 1)),  # nothing from March on: missing
            rate(4, "JPY", 150.5, D(2024, 1, 1), None),
            rate(5, "AUD", 1.5, D(2024, 1, 1), None),
        ],
        DS2: [rate(5, "AUD", 1.523456, D(2024, 1, 1), None, ts=t(31))],  # a corrected rate: latest wins
    },
    "erp.customers": {
        DS1: [
            cust(10001, A[1], t(30)),  # exact
            cust(10002, A[2][:15], t(30)),  # 15-char
            cust(10003, A[1].lower(), t(30)),  # wrong case: second customer of A1
            cust(10004, None, t(30)),  # missing
            cust(10005, "   ", t(30)),  # blank
            cust(10006, A[3], t(30)),  # account deleted
            cust(10007, A[4][:15].lower(), t(30)),  # 15-char in the wrong case: cannot be resolved
            cust(10008, "hello", t(30)),  # garbage
            cust(10009, A[4], t(30)),
            cust(10010, None, t(30)),
        ],
        DS2: [cust(10009, A[4], t(31), deleted=True), cust(10010, A[4], t(31))],  # tombstone; fixed ref
    },
    "erp.sales_orders": {
        DS1: [
            order(1, 10001, OP[1], "USD", "10.00", D(2024, 3, 1), t(30)),
            order(2, 10002, OP[2][:15], "EUR", "20.00", D(2024, 1, 31), t(30)),  # last day of a range
            order(3, 10003, OP[1].lower(), "EUR", "30.00", D(2024, 2, 1), t(30)),  # first day of a range
            order(4, 10004, None, "USD", "40.00", D(2024, 3, 1), t(30)),  # no ref
            order(5, 10001, OP[3], "GBP", "50.00", D(2024, 3, 1), t(30)),  # deleted opp; no GBP rate
            order(6, 10002, OP[2], "USD", "60.00", D(2024, 3, 1), t(30)),
            order(7, 10004, OP[8], "JPY", "7000", D(2024, 2, 2), t(30)),  # unresolved customer, linked
            order(8, 10001, "not-an-id", "AUD", "80.00", D(2024, 2, 2), t(30)),
        ],
        DS2: [order(6, 10002, OP[2], "USD", "60.00", D(2024, 3, 1), t(31), deleted=True)],
    },
}

EVENT_TYPES = ("page_view", "feature_used", "login", "email_open")


def ev(n, account, etype, who, at, partition=0, offset=None, event_id=None):
    return {"event_id": event_id or f"ev-{n:04d}", "event_type": etype, "account_id": account, "user_email": who,
            "occurred_at": at, "properties": "{}", "_kafka_topic": "tally.activity", "_kafka_partition": partition,
            "_kafka_offset": n if offset is None else offset, "_kafka_timestamp": at}


# raw/kafka/activity by ds (of the Kafka timestamp); the window for RUN_DS is [03-02, 04-01).
EVENTS: dict[str, list[dict]] = {
    "2024-02-20": [ev(1, A[1], "login", "ana@acme", t(20, 9, month=2))],  # older than 30 days
    "2024-03-02": [ev(2, A[1], "page_view", "ana@acme", t(2, 0)),  # exactly at the window start
                   ev(3, A[2], "email_open", "bo@globex", t(1, 23, month=3))],  # an hour before it
    DS1: [ev(4, A[1], "page_view", "ana@acme", t(30, 10)), ev(5, A[1], "feature_used", "cy@acme", t(30, 11)),
          ev(6, A[2], "login", "bo@globex", t(30, 12)), ev(7, A[3], "login", "x@initech", t(30, 13)),
          ev(8, sfid.make("001", 999_999), "page_view", "ghost@nowhere", t(30, 14))],
    DS2: [ev(9, A[1], "email_open", "ana@acme", t(31, 23), partition=1, offset=0),
          ev(10, A[1], "page_view", "ana@acme", t(30, 10), partition=1, offset=1, event_id="ev-0004"),  # duplicate
          ev(11, A[4], "feature_used", "di@umbrella", t(29, 8), partition=2, offset=0)],  # late arrival
    DS3: [ev(12, A[1], "page_view", "ana@acme", t(31, 23, month=3), partition=0, offset=50)],  # after the run
}


# -- building the lake ------------------------------------------------------------------------
def write_raw(lake: Lake, dataset_id: str, ds: str, rows: list[dict], commit: bool = True) -> None:
    dataset = catalog.get(dataset_id)
    schema = arrow_schema(dataset)
    if dataset.source == "erp":
        schema = schema.append(pa.field(catalog.ERP_DELETED, pa.bool_()))
    remove_partition(lake, dataset.lake_path, ds)
    batches = [pa.RecordBatch.from_pylist(rows, schema=schema)] if rows else []
    files = PartitionWriter(lake, dataset.lake_path, ds).write(schema, batches)
    if commit:
        lake.write_manifest(dataset.lake_path, ds, {
            "dataset": dataset.dataset_id, "files": files, "row_count": len(rows), "key": dataset.key,
            "key_checksum": checksum(r[dataset.key] for r in rows), "schema_fingerprint": schema_fingerprint(schema)})


def write_events(lake: Lake, ds: str, rows: list[dict], commit: bool = True) -> None:
    path = "raw/kafka/activity"
    part = lake.path(Lake.partition(path, ds))
    lake.fs.create_dir(part, recursive=True)
    name = f"p{rows[0]['_kafka_partition']}-o{rows[0]['_kafka_offset']}-{rows[-1]['_kafka_offset']}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), f"{part}/{name}", filesystem=lake.fs)
    if commit:
        lake.write_manifest(path, ds, {"dataset": "kafka.activity", "files": [name], "row_count": len(rows),
                                       "key_checksum": checksum(r["event_id"] for r in rows)})


def build_lake(root: Path) -> Lake:
    lake = Lake(str(root))
    for dataset_id, parts in RAW.items():
        for ds, rows in parts.items():
            write_raw(lake, dataset_id, ds, rows)
    # never visible: an uncommitted ds, and a stray file in a committed ds that no manifest lists
    write_raw(lake, "salesforce.Opportunity", UNCOMMITTED,
              [opp(1, 1, 1, "Closed Won", "1000000", "USD", D(2024, 2, 10), t(31, 23))], commit=False)
    stray = lake.path(Lake.partition("raw/salesforce/Opportunity", DS1), "part-stray-00000.parquet")
    pq.write_table(pa.Table.from_pylist([opp(2, 2, 2, "Closed Won", "1", "USD", D(2024, 2, 1), t(31, 23))],
                                        schema=arrow_schema(catalog.SALESFORCE["Opportunity"])), stray)
    for ds, rows in EVENTS.items():
        write_events(lake, ds, rows)
    write_events(lake, UNCOMMITTED, [ev(99, A[1], "login", "ana@acme", t(29, 1))], commit=False)
    return lake


# -- the independent model ----------------------------------------------------------------------
def latest_live(dataset_id: str, run_ds: str = RUN_DS) -> dict:
    dataset = catalog.get(dataset_id)
    best: dict = {}
    for ds, rows in RAW[dataset_id].items():
        if ds > run_ds:
            continue
        for row in rows:
            rank = (row[dataset.cursor], ds)
            if row[dataset.key] not in best or rank >= best[row[dataset.key]][0]:
                best[row[dataset.key]] = (rank, row)
    flag = dataset.deleted_flag
    return {k: row for k, (_, row) in best.items() if not (flag and row.get(flag))}


def resolve(ref: str | None, live_ids: set[str]) -> tuple[str | None, str]:
    """The reference rule, written with tally.sfid instead of Spark's joins."""
    ref = ref.strip() if ref else None
    if not ref:
        return None, "missing_ref"
    try:
        full = sfid.to18(ref)
    except ValueError:
        return None, "unknown"
    if full not in live_ids:
        return None, "unknown"
    return full, "exact" if ref == full else "expanded_15" if len(ref) == 15 else "case_fixed"


def expected(reporting: str = "USD", run_ds: str = RUN_DS) -> dict[str, dict]:
    users, accounts = latest_live("salesforce.User", run_ds), latest_live("salesforce.Account", run_ds)
    opps, rates = latest_live("salesforce.Opportunity", run_ds), latest_live("salesforce.DatedConversionRate", run_ds)
    customers, orders = latest_live("erp.customers", run_ds), latest_live("erp.sales_orders", run_ds)
    rate_rows = list(rates.values())

    def fx(amount, currency, day):
        converted = to_reporting(amount, currency, day, rate_rows, reporting)
        if currency == reporting:
            factor = 1.0
        else:
            from tally_local.generator import rate_on

            src, rep = rate_on(rate_rows, currency, day), rate_on(rate_rows, reporting, day)
            factor = None if src is None or rep is None else rep / src
        return factor, converted

    conformed = {}
    for c in customers.values():
        account_id, how = resolve(c["sf_account_ref"], set(accounts))
        conformed[c["customer_id"]] = {
            "customer_id": c["customer_id"], "customer_name": c["name"], "country": c["country"],
            "sf_account_ref": c["sf_account_ref"], "account_id": account_id,
            "resolution": "unknown_account" if how == "unknown" else how, "is_resolved": account_id is not None}

    links = {}
    for o in orders.values():
        opportunity_id, how = resolve(o["sf_opportunity_ref"], set(opps))
        factor, converted = fx(o["total_amount"], o["currency"], o["order_date"])
        customer = conformed.get(o["customer_id"], {})
        links[o["order_id"]] = {
            "order_id": o["order_id"], "customer_id": o["customer_id"], "account_id": customer.get("account_id"),
            "opportunity_id": opportunity_id, "link": "opportunity_ref" if opportunity_id else "unlinked",
            "order_date": o["order_date"], "status": o["status"], "currency": o["currency"],
            "total_amount": o["total_amount"], "fx_rate": factor, "amount_reporting": converted,
            "_how": "unknown_opportunity" if how == "unknown" else how}

    enriched = {}
    for o in opps.values():
        a, u = accounts.get(o["AccountId"], {}), users.get(o["OwnerId"], {})
        factor, converted = fx(o["Amount"], o["CurrencyIsoCode"], o["CloseDate"])
        mine = [c["customer_id"] for c in conformed.values() if c["account_id"] and c["account_id"] == o["AccountId"]]
        enriched[o["Id"]] = {
            "opportunity_id": o["Id"], "opportunity_name": o["Name"], "account_id": o["AccountId"],
            "account_name": a.get("Name"), "billing_country": a.get("BillingCountry"), "industry": a.get("Industry"),
            "owner_id": o["OwnerId"], "owner_name": u.get("Name"), "region": u.get("Region__c"),
            "stage_name": o["StageName"], "probability": o["Probability"], "close_date": o["CloseDate"],
            "is_closed": o["IsClosed"], "is_won": o["IsWon"], "currency_iso_code": o["CurrencyIsoCode"],
            "amount": o["Amount"], "fx_rate": factor, "reporting_currency": reporting, "amount_reporting": converted,
            "customer_id": min(mine) if mine else None,
            "order_count": sum(1 for link in links.values() if link["opportunity_id"] == o["Id"]),
            "created_date": o["CreatedDate"], "system_modstamp": o["SystemModstamp"]}

    return {"conformed_customers": conformed, "order_links": links, "opportunities": enriched,
            "rep_rankings": rankings(list(enriched.values())),
            "account_engagement": engagement(accounts, enriched, run_ds)}


def rankings(opportunities: list[dict]) -> dict[str, dict]:
    """rep_rankings from curated/opportunities rows, with PostgreSQL's window semantics."""
    groups: dict[tuple, list[dict]] = {}
    for o in opportunities:
        if o["owner_id"] is None or o["close_date"] is None:
            continue
        quarter = f"{o['close_date'].year}-Q{(o['close_date'].month - 1) // 3 + 1}"
        groups.setdefault((o["owner_id"], quarter), []).append(o)
    out = {}
    for (owner, quarter), rows in groups.items():
        won = [r for r in rows if r["is_won"] and r["amount"] not in (None, 0) and r["amount_reporting"] is not None]
        pipe = [r for r in rows if not r["is_closed"] and r["probability"] is not None
                and 10 <= r["probability"] <= 89 and r["amount"] not in (None, 0) and r["amount_reporting"] is not None]
        won_n, closed_n = sum(1 for r in rows if r["is_won"]), sum(1 for r in rows if r["is_closed"])
        out[f"{owner}:{quarter}"] = {
            "ranking_id": f"{owner}:{quarter}", "owner_id": owner, "owner_name": max_or_none(r["owner_name"] for r in rows),
            "region": max_or_none(r["region"] for r in rows), "quarter": quarter, "opportunity_count": len(rows),
            "won_count": won_n, "closed_count": closed_n,
            "won_amount": sum((r["amount_reporting"] for r in won), Decimal(0)) if won else None,
            "open_pipeline": sum((r["amount_reporting"] for r in pipe), Decimal(0)),
            "win_rate": won_n / closed_n if closed_n else None}
    for rep in out.values():
        peers = [r["won_amount"] for r in out.values() if (r["region"], r["quarter"]) == (rep["region"], rep["quarter"])]
        rep["percent_rank"], rep["dense_rank"] = postgres_ranks(rep["won_amount"], peers)
    return out


def max_or_none(values):
    present = [v for v in values if v is not None]
    return max(present) if present else None


def postgres_ranks(value, peers: list) -> tuple[float, int]:
    """PERCENT_RANK (ORDER BY v ASC, NULLS LAST) and DENSE_RANK (ORDER BY v DESC, NULLS FIRST)."""
    def before_asc(other):  # sorts strictly before ``value`` ascending, nulls last
        return value is None and other is not None or (other is not None and value is not None and other < value)

    below = sum(1 for p in peers if before_asc(p))
    percent = below / (len(peers) - 1) if len(peers) > 1 else 0.0
    distinct = {p for p in peers}
    if value is None:
        dense = 1
    else:
        dense = (1 if None in distinct else 0) + sum(1 for p in distinct if p is not None and p > value) + 1
    return percent, dense


def engagement(accounts: dict, opportunities: dict, run_ds: str) -> dict[str, dict]:
    end = datetime.combine(date.fromisoformat(run_ds) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=30)
    seen: dict[str, dict] = {}
    for ds, rows in sorted(EVENTS.items()):
        if ds <= run_ds:
            for row in sorted(rows, key=lambda r: (r["_kafka_partition"], r["_kafka_offset"])):
                seen.setdefault(row["event_id"], row)
    out = {}
    for account_id, a in accounts.items():
        mine = [e for e in seen.values() if e["account_id"] == account_id]
        recent = [e for e in mine if start <= e["occurred_at"] < end]
        open_ = [o for o in opportunities.values() if o["account_id"] == account_id and not o["is_closed"]]
        out[account_id] = {
            "account_id": account_id, "account_name": a["Name"], "events_total": len(mine),
            "events_30d": len(recent), "distinct_users_30d": len({e["user_email"] for e in recent}),
            "last_event_at": max((e["occurred_at"] for e in mine), default=None),
            "page_views_30d": sum(1 for e in recent if e["event_type"] == "page_view"),
            "feature_used_30d": sum(1 for e in recent if e["event_type"] == "feature_used"),
            "logins_30d": sum(1 for e in recent if e["event_type"] == "login"),
            "email_opens_30d": sum(1 for e in recent if e["event_type"] == "email_open"),
            "open_opportunities": len(open_),
            "open_pipeline_reporting": sum((o["amount_reporting"] or 0 for o in open_), Decimal(0))}
    return out


def event_counts(run_ds: str = RUN_DS) -> dict[str, int]:
    rows = [r for ds, part in EVENTS.items() if ds <= run_ds for r in part]
    distinct = {r["event_id"]: r for r in rows}
    return {"events_read": len(rows), "events_distinct": len(distinct)}
