"""dbt_project/ against a real Postgres: build it on a small hand-made warehouse and check the marts.

The raw tables are created exactly as the loader creates them (from ``tally.catalog``); the
curated tables hold what the Spark jobs would have written for these raw rows (per the curated
contract). Every expected mart number is computed here, in Python, from those rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "dbt_project"

DS1 = "2024-03-01"
DS2 = "2024-03-02"
D2 = date.fromisoformat(DS2)
CREATED = datetime(2024, 1, 15, 12, tzinfo=UTC)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


# -- FX: DatedConversionRate (units per USD), and the contract's rule computed independently ----------
# (id, iso_code, rate, start, next_start)
RATES = [
    ("04wE1", "EUR", 0.8, "2024-01-01", "2024-03-01"),
    ("04wE2", "EUR", 0.9, "2024-03-01", None),
    ("04wG1", "GBP", 0.5, "2024-01-01", None),
]


def rate(currency: str, day: date) -> Decimal | None:
    if currency == "USD":
        return Decimal(1)
    for _, code, r, start, nxt in RATES:
        if code == currency and d(start) <= day and (nxt is None or day < d(nxt)):
            return Decimal(str(r))
    return None


def usd(amount: Decimal, currency: str, day: date) -> Decimal | None:
    """amount / rate(src, day) * rate(USD, day), half-up to 9 decimals; None without a rate."""
    if currency == "USD":
        return amount
    src = rate(currency, day)
    return None if src is None else (amount / src).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)


# -- Salesforce ---------------------------------------------------------------------------------------
USERS = {  # id: (name, region, is_active in the latest version)
    "005A": ("Alice Ahn", "EMEA", True),
    "005B": ("Bob Berg", "AMER", False),
    "005C": ("Cara Cole", "EMEA", True),
}
ACCOUNTS = {"001A": ("Acme", "005A"), "001B": ("Bolt", "005C"), "001C": ("Crux", "005B"), "001D": ("Dune", "005A")}

# Latest live versions at DS2: id -> (account, owner, stage, currency, amount, probability, close, created)
OPPS = {
    "006-1": ("001A", "005A", "Closed Won", "USD", "1000.50", 100, "2024-02-20", "2024-01-15"),
    "006-2": ("001A", "005A", "Closed Won", "EUR", "500", 100, "2024-03-01", "2024-01-15"),
    "006-3": ("001B", "005C", "Proposal/Price Quote", "EUR", "800", 75, "2024-04-15", "2024-01-15"),
    "006-4": ("001C", "005B", "Prospecting", "USD", "300", 10, "2024-03-30", "2024-01-15"),
    "006-5": ("001C", "005B", "Negotiation/Review", "USD", "900", 90, "2024-03-28", "2023-11-01"),
    "006-6": ("001A", "005C", "Closed Lost", "USD", "200", 0, "2024-02-10", "2024-01-15"),
    "006-7": ("001B", "005C", "Closed Won", "USD", "0", 100, "2024-03-01", "2024-01-15"),
    "006-8": ("001A", "005A", "Qualification", "USD", "0", 20, "2024-03-20", "2024-01-15"),
}


def opp_closed(stage: str) -> bool:
    return stage.startswith("Closed")


def opp_amount_usd(oid: str) -> Decimal | None:
    _, _, _, cur, amount, _, close, _ = OPPS[oid]
    return usd(Decimal(amount), cur, d(close))


# -- ERP ----------------------------------------------------------------------------------------------
CUSTOMERS = {1: ("Acme GmbH", "DE", "001A", "001A", "exact"), 2: ("Crux Ltd", "GB", "001c", "001C", "case_fixed"),
             3: ("Nomad SARL", "FR", None, None, "missing_ref")}
# order_id: (customer, order_date, status, currency, total, sf_opportunity_ref, linked opportunity)
ORDERS = {
    10: (1, "2024-02-21", "invoiced", "USD", "1000.50", "006-1", "006-1"),
    11: (1, "2024-03-01", "shipped", "EUR", "500", "006-2", "006-2"),
    12: (2, "2024-02-15", "open", "GBP", "75.5", None, None),
    13: (3, "2024-01-10", "cancelled", "USD", "40", None, None),
    14: (3, "2024-02-28", "invoiced", "JPY", "1000", None, None),  # no JPY rate: fx missing, kept
}
# invoice_id: (order, invoice_date, due_date, currency, amount, status)
INVOICES = {
    100: (10, "2024-02-22", "2024-03-20", "USD", "1000.50", "open"),
    101: (11, "2024-03-01", "2024-03-31", "EUR", "500", "paid"),
    102: (12, "2024-02-16", "2024-03-01", "GBP", "75.5", "open"),  # overdue at DS2
    103: (14, "2024-02-29", "2024-03-10", "JPY", "1000", "void"),
}
# payment_id: (invoice, payment_date, currency, amount)
PAYMENTS = {200: (100, "2024-02-25", "USD", "400"), 201: (101, "2024-03-02", "EUR", "500")}
# account_id: (events_total, events_30d)
ENGAGEMENT = {"001A": (40, 12), "001B": (3, 0), "001C": (9, 5), "001D": (0, 0)}


# -- what Spark would have written for DS2 (curated contract) -------------------------------------------
def quarter(day: str) -> str:
    dd = d(day)
    return f"{dd.year}-Q{(dd.month - 1) // 3 + 1}"


def curated_rankings() -> list[dict]:
    groups: dict[tuple[str, str], dict] = {}
    for oid, (_, owner, stage, _, amount, prob, close, _) in OPPS.items():
        g = groups.setdefault((owner, quarter(close)), {"n": 0, "won_n": 0, "closed_n": 0, "won": None, "open": None})
        g["n"] += 1
        closed, won, amt = opp_closed(stage), stage == "Closed Won", Decimal(amount)
        g["closed_n"] += closed
        g["won_n"] += won
        if won and amt != 0:
            g["won"] = (g["won"] or 0) + opp_amount_usd(oid)
        if not closed and 10 <= prob <= 89 and amt != 0:
            g["open"] = (g["open"] or 0) + opp_amount_usd(oid)
    rows = []
    for (owner, q), g in groups.items():
        region = USERS[owner][1]
        peers = [p["won"] for (o, pq), p in groups.items() if pq == q and USERS[o][1] == region]
        big = Decimal("1e30")  # nulls sort last ascending, first descending: as the greatest value
        mine = big if g["won"] is None else g["won"]
        values = [big if w is None else w for w in peers]
        prank = (sum(1 for v in values if v < mine) / (len(values) - 1)) if len(values) > 1 else 0.0
        drank = 1 + len({v for v in values if v > mine})
        rows.append({"ranking_id": f"{owner}:{q}", "owner_id": owner, "owner_name": USERS[owner][0],
                     "region": region, "quarter": q, "opportunity_count": g["n"], "won_count": g["won_n"],
                     "closed_count": g["closed_n"], "won_amount": g["won"], "open_pipeline": g["open"],
                     "win_rate": g["won_n"] / g["closed_n"] if g["closed_n"] else None,
                     "percent_rank": prank, "dense_rank": drank})
    return rows


def curated_opportunities() -> list[dict]:
    orders_of = {}
    for oid, o in ORDERS.items():
        if o[6]:
            orders_of.setdefault(o[6], []).append(oid)
    rows = []
    for oid, (acc, owner, stage, cur, amount, prob, close, created) in OPPS.items():
        amt_usd = opp_amount_usd(oid)
        customer = next((c for c, v in CUSTOMERS.items() if v[3] == acc), None)
        rows.append({"opportunity_id": oid, "opportunity_name": f"Deal {oid}", "account_id": acc,
                     "account_name": ACCOUNTS[acc][0], "billing_country": "DE", "industry": "Tech",
                     "owner_id": owner, "owner_name": USERS[owner][0], "region": USERS[owner][1],
                     "stage_name": stage, "probability": float(prob), "close_date": d(close),
                     "is_closed": opp_closed(stage), "is_won": stage == "Closed Won", "currency_iso_code": cur,
                     "amount": Decimal(amount), "fx_rate": None if amt_usd is None else 1 / float(rate(cur, d(close))),
                     "reporting_currency": "USD", "amount_reporting": amt_usd, "customer_id": customer,
                     "order_count": len(orders_of.get(oid, [])), "created_date": ts(f"{created} 09:00:00"),
                     "system_modstamp": ts("2024-03-01 09:00:00")})
    return rows


def open_pipeline_of(account: str) -> tuple[int, Decimal]:
    hits = [oid for oid, o in OPPS.items()
            if o[0] == account and not opp_closed(o[2]) and 10 <= o[5] <= 89 and Decimal(o[4]) != 0]
    return len(hits), sum((opp_amount_usd(h) for h in hits), Decimal(0))


def curated_rows() -> dict[str, list[dict]]:
    return {
        "conformed_customers": [
            {"customer_id": c, "customer_name": n, "country": co, "sf_account_ref": ref, "account_id": acc,
             "resolution": res, "is_resolved": acc is not None} for c, (n, co, ref, acc, res) in CUSTOMERS.items()],
        "opportunities": curated_opportunities(),
        "order_links": [
            {"order_id": o, "customer_id": c, "account_id": CUSTOMERS[c][3], "opportunity_id": opp,
             "link": "opportunity_ref" if opp else "unlinked", "order_date": d(od), "status": st, "currency": cur,
             "total_amount": Decimal(amt), "fx_rate": None if rate(cur, d(od)) is None else 1 / float(rate(cur, d(od))),
             "amount_reporting": usd(Decimal(amt), cur, d(od))}
            for o, (c, od, st, cur, amt, _, opp) in ORDERS.items()],
        "rep_rankings": curated_rankings(),
        "account_engagement": [
            {"account_id": a, "account_name": ACCOUNTS[a][0], "events_total": tot, "events_30d": e30,
             "distinct_users_30d": min(e30, 3), "last_event_at": ts("2024-03-02 08:00:00") if tot else None,
             "page_views_30d": e30, "feature_used_30d": 0, "logins_30d": 0, "email_opens_30d": 0,
             "open_opportunities": open_pipeline_of(a)[0], "open_pipeline_reporting": open_pipeline_of(a)[1]}
            for a, (tot, e30) in ENGAGEMENT.items()],
    }


CURATED_DDL = """
create schema if not exists curated;
create table curated.conformed_customers (
    customer_id bigint, customer_name text, country text, sf_account_ref text, account_id text,
    resolution text, is_resolved boolean, _ds date not null, _loaded_at timestamptz not null default now());
create table curated.opportunities (
    opportunity_id text, opportunity_name text, account_id text, account_name text, billing_country text,
    industry text, owner_id text, owner_name text, region text, stage_name text, probability double precision,
    close_date date, is_closed boolean, is_won boolean, currency_iso_code text, amount numeric(38,9),
    fx_rate double precision, reporting_currency text, amount_reporting numeric(38,9), customer_id bigint,
    order_count bigint, created_date timestamptz, system_modstamp timestamptz,
    _ds date not null, _loaded_at timestamptz not null default now());
create table curated.order_links (
    order_id bigint, customer_id bigint, account_id text, opportunity_id text, link text, order_date date,
    status text, currency text, total_amount numeric(38,9), fx_rate double precision,
    amount_reporting numeric(38,9), _ds date not null, _loaded_at timestamptz not null default now());
create table curated.rep_rankings (
    ranking_id text, owner_id text, owner_name text, region text, quarter text, opportunity_count bigint,
    won_count bigint, closed_count bigint, won_amount numeric(38,9), open_pipeline numeric(38,9),
    win_rate double precision, percent_rank double precision, dense_rank bigint,
    _ds date not null, _loaded_at timestamptz not null default now());
create table curated.account_engagement (
    account_id text, account_name text, events_total bigint, events_30d bigint, distinct_users_30d bigint,
    last_event_at timestamptz, page_views_30d bigint, feature_used_30d bigint, logins_30d bigint,
    email_opens_30d bigint, open_opportunities bigint, open_pipeline_reporting numeric(38,9),
    _ds date not null, _loaded_at timestamptz not null default now());
"""


def insert(conn: psycopg.Connection, table: str, rows: list[dict], ds: str) -> None:
    if not rows:
        return
    schema, name = table.split(".")
    cols = [*rows[0], "_ds", "_loaded_at"]
    stmt = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)))
    now = datetime.now(UTC)
    with conn.cursor() as cur:
        cur.executemany(stmt, [[*r.values(), ds, now] for r in rows])


def seed(conn: psycopg.Connection) -> None:
    from tally import catalog, ledger
    from tally.lake import arrow_schema
    from tally.ledger import Entry
    from tally.load.warehouse import ensure_table
    from tally.sources.erp.extract import raw_schema

    for dataset in catalog.all_raw():  # every raw table exactly as the loader creates it
        schema = raw_schema(dataset) if dataset.source == "erp" else arrow_schema(dataset)
        ensure_table(conn, "raw", dataset.warehouse_table, schema)
    conn.execute("alter table raw.erp_sales_orders add column if not exists sf_opportunity_ref text")
    conn.execute(CURATED_DDL)

    mod = ts("2024-03-01 09:00:00")
    users = [{"id": u, "name": n, "email": f"{u}@example.com", "is_active": True, "region__c": r,
              "created_date": CREATED, "system_modstamp": ts("2024-02-20 10:00:00")} for u, (n, r, _) in USERS.items()]
    insert(conn, "raw.sf_user", users, DS1)
    insert(conn, "raw.sf_user", [{**users[1], "is_active": False, "system_modstamp": ts("2024-03-01 15:00:00")}], DS2)
    insert(conn, "raw.sf_account", [
        {"id": a, "name": n, "owner_id": o, "is_deleted": False, "created_date": CREATED, "system_modstamp": mod}
        for a, (n, o) in ACCOUNTS.items()], DS1)
    opp_rows = [{"id": oid, "name": f"Deal {oid}", "account_id": a, "owner_id": o, "stage_name": st,
                 "amount": Decimal(amt), "probability": float(p), "close_date": d(cl), "is_closed": opp_closed(st),
                 "is_won": st == "Closed Won", "currency_iso_code": cur, "is_deleted": False,
                 "created_date": ts(f"{cr} 09:00:00"), "system_modstamp": mod}
                for oid, (a, o, st, cur, amt, p, cl, cr) in OPPS.items()]
    insert(conn, "raw.sf_opportunity", [*opp_rows, {**opp_rows[0], "id": "006-9"}], DS1)
    insert(conn, "raw.sf_opportunity", [{**opp_rows[0], "id": "006-9", "is_deleted": True,
                                         "system_modstamp": ts("2024-03-02 10:00:00")}], DS2)
    insert(conn, "raw.sf_dated_conversion_rate", [
        {"id": i, "iso_code": c, "conversion_rate": r, "start_date": d(s), "next_start_date": n and d(n),
         "created_date": CREATED, "system_modstamp": CREATED} for i, c, r, s, n in RATES], DS1)

    erp_mod = ts("2024-03-01 12:00:00")
    insert(conn, "raw.erp_customers", [
        {"customer_id": c, "name": n, "country": co, "sf_account_ref": ref, "created_at": CREATED,
         "updated_at": erp_mod, "_deleted": False} for c, (n, co, ref, _, _) in CUSTOMERS.items()], DS1)
    orders = [{"order_id": o, "customer_id": c, "order_date": d(od), "status": st, "currency": cur,
               "total_amount": Decimal(amt), "sf_opportunity_ref": ref, "created_at": CREATED,
               "updated_at": erp_mod, "_deleted": False} for o, (c, od, st, cur, amt, ref, _) in ORDERS.items()]
    insert(conn, "raw.erp_sales_orders", [*orders, {**orders[0], "order_id": 15}], DS1)
    insert(conn, "raw.erp_sales_orders", [{"order_id": 15, "updated_at": ts("2024-03-02 01:00:00"),
                                           "_deleted": True}], DS2)  # tombstone
    insert(conn, "raw.erp_invoices", [
        {"invoice_id": i, "order_id": o, "invoice_number": f"INV-{i}", "invoice_date": d(idt), "due_date": d(due),
         "currency": cur, "amount": Decimal(amt), "status": st, "created_at": CREATED, "updated_at": erp_mod,
         "_deleted": False} for i, (o, idt, due, cur, amt, st) in INVOICES.items()], DS1)
    payments = [{"payment_id": p, "invoice_id": i, "payment_date": d(pd), "method": "wire", "amount": Decimal(amt),
                 "currency": cur, "created_at": CREATED, "updated_at": erp_mod, "_deleted": False}
                for p, (i, pd, cur, amt) in PAYMENTS.items()]
    insert(conn, "raw.erp_payments", [*payments, {**payments[0], "payment_id": 202, "invoice_id": 102}], DS1)
    insert(conn, "raw.erp_payments", [{"payment_id": 202, "updated_at": ts("2024-03-02 01:00:00"),
                                       "_deleted": True}], DS2)  # tombstone
    for name, rows in curated_rows().items():
        insert(conn, f"curated.{name}", rows, DS2)
    # the publish's ledger rows: the publication time source freshness reads
    datasets = [ds.dataset_id for ds in catalog.all_raw()] + list(catalog.CURATED_KEYS)
    for dataset in datasets:
        ledger.record(conn, Entry(DS2, dataset, "warehouse", 0, None, {"published_at": "2024-03-02T01:00:00+00:00"}))


# -- expected marts, computed from the rows above ----------------------------------------------------------
def expected_revenue() -> dict[tuple[str, date], dict]:
    out: dict[tuple[str, date], dict] = {}

    def add(measure: str, customer: int | None, day: str, amount: Decimal | None) -> None:
        country = CUSTOMERS[customer][1] if customer in CUSTOMERS else "unknown"
        row = out.setdefault((country, d(day).replace(day=1)), {
            f"{m}_{k}": Decimal(0) if k == "amount" else 0
            for m in ("bookings", "billings", "collections") for k in ("amount", "count", "fx_missing")})
        row[f"{measure}_count"] += 1
        if amount is None:
            row[f"{measure}_fx_missing"] += 1
        else:
            row[f"{measure}_amount"] += amount

    for c, od, st, cur, amt, _, _ in ORDERS.values():
        if st != "cancelled":
            add("bookings", c, od, usd(Decimal(amt), cur, d(od)))
    for o, idt, _, cur, amt, st in INVOICES.values():
        if st != "void":
            add("billings", ORDERS[o][0], idt, usd(Decimal(amt), cur, d(idt)))
    for i, pd, cur, amt in PAYMENTS.values():
        add("collections", ORDERS[INVOICES[i][0]][0], pd, usd(Decimal(amt), cur, d(pd)))
    return out


def expected_account_health() -> dict[str, dict]:
    out = {}
    for a, (_, e30) in ENGAGEMENT.items():
        n_open, pipeline = open_pipeline_of(a)
        overdue = []
        for i, (o, idt, due, cur, amt, st) in INVOICES.items():
            paid = sum((Decimal(p[3]) for p in PAYMENTS.values() if p[0] == i), Decimal(0))
            if CUSTOMERS[ORDERS[o][0]][3] == a and st != "void" and Decimal(amt) > paid and d(due) < D2:
                overdue.append((usd(Decimal(amt) - paid, cur, d(idt)), (D2 - d(due)).days))
        status = ("at_risk" if overdue or (n_open and e30 == 0) else "quiet" if e30 == 0 else "engaged")
        out[a] = {"open_opportunities": n_open, "open_pipeline": pipeline, "overdue_invoices": len(overdue),
                  "overdue_amount": sum((x for x, _ in overdue), Decimal(0)),
                  "max_days_overdue": max((n for _, n in overdue), default=None), "health_status": status}
    return out


# Phases worked out by hand from the rows above (ds = 2024-03-02).
EXPECTED_PHASES = {
    "order:10": ("invoiced", "2024-02-22", 9, False),       # 400 of 1000.50 paid
    "order:11": ("paid", "2024-03-02", 0, False),           # paid in full on DS2
    "order:12": ("invoiced", "2024-02-16", 15, False),      # the DS1 payment was deleted
    "order:13": ("cancelled", "2024-01-10", 52, False),
    "order:14": ("ordered", "2024-02-28", 3, False),        # its only invoice is void
    "opportunity:006-3": ("opportunity", "2024-01-15", 47, False),
    "opportunity:006-4": ("opportunity", "2024-01-15", 47, False),
    "opportunity:006-5": ("opportunity", "2023-11-01", 122, True),   # open > 90 days
    "opportunity:006-6": ("closed_lost", "2024-02-10", 21, False),
    "opportunity:006-7": ("awaiting_order", "2024-03-01", 1, False),  # won, no order
    "opportunity:006-8": ("opportunity", "2024-01-15", 47, False),
}


def fetch(conn: psycopg.Connection, table: str, ds: str = DS2) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("select * from {} where ds = %s").format(sql.Identifier("marts", table)), (ds,))
        return cur.fetchall()


# -- dbt runner --------------------------------------------------------------------------------------
def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    found = str(beside) if beside.exists() else shutil.which("dbt")
    assert found, "dbt is not installed (pip install -e .)"
    return found


@pytest.fixture
def dbt(warehouse_dsn, tmp_path):
    """Run dbt against the warehouse_dsn database, with private target and log paths."""
    from tally import contract

    params = conninfo_to_dict(warehouse_dsn)
    env = {
        **{k: v for k, v in os.environ.items() if k != "TALLY_REPORTING_CURRENCY"},
        "TALLY_DBT_HOST": str(params.get("host") or "127.0.0.1"),
        "TALLY_DBT_PORT": str(params.get("port") or 5432),
        "TALLY_DBT_USER": str(params.get("user") or os.environ.get("USER", "postgres")),
        "TALLY_DBT_PASSWORD": str(params.get("password") or ""),
        "TALLY_DBT_DBNAME": str(params["dbname"]),
        "TALLY_DBT_SCHEMA": "analytics",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    target_path = tmp_path / "target"

    def run(*args: str, ds: str | None = None, ok: bool = True) -> dict:
        cmd = [dbt_executable(), *args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
               "--target-path", str(target_path), "--log-path", str(tmp_path / "logs")]
        # the business rules' vars always (every model compiles with them), as the dbt stage passes them
        cmd += ["--vars", json.dumps({**contract.dbt_vars(), **({"ds": ds} if ds is not None else {})})]
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        print(f"{' '.join(args)} ds={ds}: rc={proc.returncode} in {time.monotonic() - started:.1f}s")
        if ok:
            assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        else:
            assert proc.returncode != 0, f"{cmd} should have failed:\n{proc.stdout}"
        name = {("source", "freshness"): "sources.json", ("docs", "generate"): "manifest.json"}.get(
            args[:2], "run_results.json")
        return json.loads((target_path / name).read_text())

    return run


def statuses(run_results: dict) -> dict[str, str]:
    return {r["unique_id"]: r["status"] for r in run_results["results"]}


FX_MISSING_WARNING = "test.tally.int_erp__documents_fx_rate_found"


def test_dbt_build_marts_freshness_and_gate(warehouse_conn, warehouse_dsn, dbt, tmp_path):
    from tally import ledger
    from tally.contract import MARTS
    from tally.core.errors import DataProblem
    from tally.core.resources import Resources
    from tally.gates.mart import gate_mart
    from tally.lake import Lake
    from tally.lake.checksum import checksum

    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        seed(conn)

        # 1. One build for DS2: source tests, staging, intermediate, snapshots, unit tests, marts, tests.
        results = statuses(dbt("build", ds=DS2))
        units = {k.rsplit(".", 1)[1]: v for k, v in results.items() if k.startswith("unit_test.")}
        assert units == {"mart_rep_performance_win_rate": "pass", "mart_o2r_pipeline_phases": "pass",
                         "int_erp__documents_currency_conversion": "pass", "stg_erp__sales_orders_as_of_ds": "pass",
                         "stg_sf__dated_conversion_rates_as_of_ds": "pass"}
        models = {k for k in results if k.startswith(("model.", "snapshot."))}
        assert len(models) == 13 + 5 + 3 + 4 + 2, sorted(models)  # staging (raw, curated), int, marts, snapshots
        not_clean = {k: v for k, v in results.items()
                     if v not in ("success", "pass") and not k.startswith("exposure.")}
        # the one order without an FX rate (JPY) is surfaced as a warning, not dropped
        assert [(k.rsplit(".", 1)[0], v) for k, v in not_clean.items()] == [(FX_MISSING_WARNING, "warn")], not_clean

        # 2. mart_rep_performance = the curated rankings, with exact win rates and latest user status
        want = {r["ranking_id"]: r for r in curated_rankings()}
        got = {r["ranking_id"]: r for r in fetch(conn, "mart_rep_performance")}
        assert set(got) == set(want) == {"005A:2024-Q1", "005B:2024-Q1", "005C:2024-Q1", "005C:2024-Q2"}
        for rid, row in got.items():
            w = want[rid]
            assert (row["won_amount"], row["open_pipeline"], row["won_count"], row["closed_count"]) == (
                w["won_amount"], w["open_pipeline"], w["won_count"], w["closed_count"]), rid
            assert (row["percent_rank_in_region"], row["dense_rank_in_region"]) == (w["percent_rank"], w["dense_rank"])
            assert row["win_rate"] == (None if not w["closed_count"] else Decimal(w["won_count"]) / w["closed_count"])
            assert row["is_active"] == USERS[row["owner_id"]][2] and row["reporting_currency"] == "USD"
        assert got["005A:2024-Q1"]["won_amount"] == Decimal("1000.50") + Decimal("555.555555556")

        # 3. mart_o2r_pipeline: one row per order and per orderless opportunity, phases as worked out
        o2r = {r["flow_id"]: r for r in fetch(conn, "mart_o2r_pipeline")}
        assert {k: (r["phase"], str(r["phase_started_on"]), r["days_in_phase"], r["is_stalled"])
                for k, r in o2r.items()} == {k: v for k, v in EXPECTED_PHASES.items()}
        for oid, (_, _, _, cur, amt, _, opp) in ORDERS.items():
            row = o2r[f"order:{oid}"]
            assert row["order_amount_reporting"] == usd(Decimal(amt), cur, d(ORDERS[oid][1]))
            assert row["opportunity_id"] == opp
        assert o2r["order:10"]["paid_amount_reporting"] == Decimal(400)
        assert o2r["order:11"]["invoiced_amount_reporting"] == Decimal("555.555555556")
        assert o2r["order:14"]["fx_missing"] == 1

        # 4. mart_revenue_by_country: monthly bookings, billings, collections in USD, fx-missing counted
        revenue = {(r["country"], r["month"]): r for r in fetch(conn, "mart_revenue_by_country")}
        want_rev = expected_revenue()
        assert set(revenue) == set(want_rev)
        for key, w in want_rev.items():
            assert {k: revenue[key][k] for k in w} == w, key
        assert want_rev[("FR", date(2024, 2, 1))]["bookings_fx_missing"] == 1

        # 5. mart_account_health
        health = {r["account_id"]: r for r in fetch(conn, "mart_account_health")}
        want_health = expected_account_health()
        assert set(health) == set(want_health)
        for a, w in want_health.items():
            assert {k: health[a][k] for k in w} == w, a
        assert [a for a, w in want_health.items() if w["overdue_invoices"]] == ["001C"]
        assert {a: w["health_status"] for a, w in want_health.items()} == {
            "001A": "engaged", "001B": "at_risk", "001C": "at_risk", "001D": "quiet"}

        # 6. SCD2 snapshots: a stage change and an owner change add a version, the old one is closed
        with conn.cursor() as cur:
            cur.execute("select count(*), count(*) filter (where dbt_valid_to is null) from snapshots.snap_opportunity_stage")
            assert cur.fetchone() == (len(OPPS), len(OPPS))
            insert(conn, "raw.sf_opportunity", [{"id": "006-4", "account_id": "001C", "owner_id": "005B",
                                                 "stage_name": "Qualification", "amount": Decimal(300),
                                                 "probability": 20.0, "close_date": d("2024-03-30"),
                                                 "is_closed": False, "is_won": False, "currency_iso_code": "USD",
                                                 "is_deleted": False, "system_modstamp": ts("2024-03-02 11:00:00")}],
                   DS2)
            insert(conn, "raw.sf_account", [{"id": "001D", "name": "Dune", "owner_id": "005C", "is_deleted": False,
                                             "system_modstamp": ts("2024-03-02 11:00:00")}], DS2)
        dbt("snapshot")
        with conn.cursor() as cur:
            cur.execute("select stage_name, dbt_valid_to is null from snapshots.snap_opportunity_stage"
                        " where opportunity_id = '006-4' order by dbt_valid_from")
            assert cur.fetchall() == [("Prospecting", False), ("Qualification", True)]
            cur.execute("select owner_id, dbt_valid_to is null from snapshots.snap_account_owner"
                        " where account_id = '001D' order by dbt_valid_from")
            assert cur.fetchall() == [("005A", False), ("005C", True)]

        # 7. Freshness comes from the ledger's load time: all fresh; then one load 60 h old is stale
        #    although its rows' _loaded_at is recent.
        fresh = {r["unique_id"]: r["status"] for r in dbt("source", "freshness")["results"]}
        assert len(fresh) == 13 + 5 and set(fresh.values()) == {"pass"}, fresh
        with conn.cursor() as cur:
            cur.execute("update ops.ledger set recorded_at = now() - interval '60 hours'"
                        " where dataset = 'erp.payments' and hop = 'warehouse'")
        # a later ds staged but not published (its warehouse gate failed) does not make it fresh
        ledger.record(conn, ledger.Entry("2024-03-03", "erp.payments", "warehouse", 0, None, {"table": "raw.erp_payments"}))
        stale = {r["unique_id"]: r["status"] for r in dbt("source", "freshness", ok=False)["results"]}
        assert {k: v for k, v in stale.items() if v != "pass"} == {"source.tally.raw.erp_payments": "error"}

        # 8. Each mart is indexed on its ds slice and grain (the delete, the merge and the gate read one ds)
        with conn.cursor() as cur:
            cur.execute("select tablename, regexp_replace(indexdef, '.* USING btree ', '') from pg_indexes"
                        " where schemaname = 'marts' order by 1")
            assert cur.fetchall() == [("mart_account_health", "(ds, account_id)"), ("mart_o2r_pipeline", "(ds, flow_id)"),
                                      ("mart_rep_performance", "(ds, ranking_id)"),
                                      ("mart_revenue_by_country", "(ds, country, month)")]

        #    The mart gate: every mart's totals equal the curated totals exactly; the ledger's mart hop
        res = Resources(lake=Lake(str(tmp_path / "lake")), warehouse=warehouse_conn)
        gate = gate_mart(res, DS2)
        assert [(r["dataset"], r["success"]) for r in gate] == [(m, True) for m in MARTS]
        flow = ledger.flow(conn, DS2)
        assert (flow["rep_rankings"]["mart"].row_count, flow["rep_rankings"]["mart"].key_checksum) == (
            len(want), checksum(want))
        assert flow["order_links"]["mart"].key_checksum == checksum(ORDERS)
        assert flow["account_engagement"]["mart"].row_count == len(ENGAGEMENT)

        # ... and a single nano-unit off in one mart row fails it, naming the check and both totals
        with conn.cursor() as cur:
            cur.execute("update marts.mart_revenue_by_country set bookings_amount = bookings_amount + 0.000000001"
                        " where ds = %s and country = 'DE' and month = '2024-02-01'", (DS2,))
        with pytest.raises(DataProblem) as failed:
            gate_mart(res, DS2)
        total = sum((w["bookings_amount"] for w in want_rev.values()), Decimal(0))
        assert "mart.mart_revenue_by_country" in str(failed.value)
        assert f"observed {total + Decimal('1e-9')} expected {total}" in str(failed.value)
        assert [r.dataset for r in failed.value.results] == ["mart_revenue_by_country"]

        # 9. The docs site builds, and every model and snapshot is described
        manifest = dbt("docs", "generate")
        undocumented = [n for n, node in manifest["nodes"].items()
                        if node["resource_type"] in ("model", "snapshot") and not node["description"].strip()]
        assert not undocumented
        assert len(manifest["exposures"]) == 4

        # 10. Another ds lands beside DS2 and replaces only itself (re-run twice: no duplicates)
        insert(conn, "curated.rep_rankings", [{**r, "won_count": 0} for r in curated_rankings()], DS1)
        for _ in range(2):
            dbt("run", "--select", "mart_rep_performance", ds=DS1)
        assert {r["ranking_id"] for r in fetch(conn, "mart_rep_performance", DS1)} == set(want)
        assert {r["ranking_id"]: r["won_count"] for r in fetch(conn, "mart_rep_performance", DS2)} == {
            k: w["won_count"] for k, w in want.items()}
        with conn.cursor() as cur:
            cur.execute("select count(*) from marts.mart_rep_performance")
            assert cur.fetchone()[0] == 2 * len(want)

