"""dbt_project/ against a real Postgres: build it on a small hand-made warehouse and check the mart.

Needs the ``warehouse_dsn`` fixture: a libpq conninfo string for an empty database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT_DIR = REPO / "dbt_project"

DS1 = "2024-03-01"
DS2 = "2024-03-02"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


DDL = """
create schema if not exists raw;
create schema if not exists curated;
create table raw.sf_user (
    id text, name text, email text, is_active boolean, region__c text,
    created_date timestamptz, system_modstamp timestamptz,
    _ds date not null, _loaded_at timestamptz not null
);
create table raw.sf_account (
    id text, name text, billing_country text, industry text, owner_id text, is_deleted boolean,
    created_date timestamptz, system_modstamp timestamptz,
    _ds date not null, _loaded_at timestamptz not null
);
create table raw.sf_opportunity (
    id text, name text, account_id text, owner_id text, stage_name text, amount numeric(38,9),
    probability double precision, close_date date, is_closed boolean, is_won boolean,
    is_deleted boolean, created_date timestamptz, system_modstamp timestamptz,
    _ds date not null, _loaded_at timestamptz not null
);
create table raw.erp_customers (
    customer_id bigint, name text, country text, sf_account_ref text,
    created_at timestamptz, updated_at timestamptz,
    _ds date not null, _loaded_at timestamptz not null
);
create table raw.erp_sales_orders (
    order_id bigint, customer_id bigint, order_date date, status text, currency text,
    total_amount numeric(38,9), created_at timestamptz, updated_at timestamptz,
    _ds date not null, _loaded_at timestamptz not null
);
create table curated.rep_rankings (
    owner_id text, owner_name text, region text, won_amount numeric(38,9), won_count bigint,
    closed_count bigint, open_pipeline numeric(38,9), opportunity_count bigint,
    percent_rank double precision, _ds date not null, _loaded_at timestamptz not null
);
"""

CREATED = ts("2024-01-15 12:00:00")

# (id, name, email, is_active, region, system_modstamp, _ds)
USERS = [
    ("005A", "Alice Ahn", "alice@example.com", True, "EMEA", "2024-02-20 10:00:00", DS1),
    # Bob: deactivated in the DS2 version (newer modstamp) -> inactive.
    ("005B", "Bob Berg", "bob@example.com", True, "AMER", "2024-02-29 10:00:00", DS1),
    ("005B", "Bob Berg", "bob@example.com", False, "AMER", "2024-03-01 15:00:00", DS2),
    # Cara: same modstamp in two slices -> the greater _ds wins ("Cara Cole").
    ("005C", "Cara Old", "cara@example.com", True, "EMEA", "2024-02-28 09:00:00", DS1),
    ("005C", "Cara Cole", "cara@example.com", True, "EMEA", "2024-02-28 09:00:00", DS2),
    # Dan: the DS2 slice holds an older (stale) version -> the DS1 version wins.
    ("005D", "Dan Dahl", "dan@new.example.com", True, "AMER", "2024-03-01 08:00:00", DS1),
    ("005D", "Dan Dahl", "dan@old.example.com", False, "AMER", "2024-02-27 08:00:00", DS2),
]

# (id, name, owner_id, is_deleted, system_modstamp, _ds)
ACCOUNTS = [
    ("001A", "Acme", "005A", False, "2024-02-01 00:00:00", DS1),
    ("001B", "Bolt", "005C", False, "2024-02-01 00:00:00", DS1),
    ("001B", "Bolt", "005C", True, "2024-03-01 18:00:00", DS2),  # deleted in its latest version
    ("001C", "Crux", "005D", False, "2024-03-01 11:00:00", DS2),
]

# (id, account_id, owner_id, stage_name, amount, is_closed, is_won, is_deleted, modstamp, _ds)
OPPORTUNITIES = [
    ("006-1", "001A", "005A", "Closed Won", "1000.50", True, True, False, "2024-02-29 09:00:00", DS1),
    ("006-2", "001A", "005A", "Negotiation/Review", "500", False, False, False, "2024-02-29 09:00:00", DS1),
    ("006-2", "001A", "005A", "Closed Won", "500", True, True, False, "2024-03-01 09:00:00", DS2),
    ("006-3", "001A", "005A", "Closed Lost", "300", True, False, False, "2024-02-29 09:00:00", DS1),
    ("006-4", "001A", "005C", "Closed Lost", "200", True, False, False, "2024-02-29 09:00:00", DS1),
    ("006-5", "001C", "005B", "Prospecting", "900", False, False, False, "2024-03-01 10:00:00", DS2),
    ("006-6", "001C", "005D", "Closed Won", "250", True, True, False, "2024-03-01 10:00:00", DS2),
    ("006-7", "001A", "005C", "Qualification", "700", False, False, False, "2024-02-29 09:00:00", DS1),
    ("006-7", "001A", "005C", "Qualification", "700", False, False, True, "2024-03-01 12:00:00", DS2),
    ("006-8", "001A", "005C", "Closed Won", "400", True, True, False, "2024-03-01 13:00:00", DS2),
]

# (customer_id, name, country, sf_account_ref, updated_at, _ds)
CUSTOMERS = [
    (1, "Acme GmbH", "DE", "001A", "2024-02-01 00:00:00", DS1),
    (1, "Acme GmbH", "AT", "001A", "2024-03-01 07:00:00", DS2),
    (2, "Crux Ltd", "GB", "001C", "2024-03-01 07:30:00", DS2),
]

# (order_id, customer_id, order_date, status, currency, total_amount, updated_at, _ds)
ORDERS = [
    (10, 1, "2024-02-29", "open", "EUR", "120.000000001", "2024-02-29 12:00:00", DS1),
    (10, 1, "2024-02-29", "shipped", "EUR", "120.000000001", "2024-03-01 12:00:00", DS2),
    (11, 2, "2024-03-01", "open", "GBP", "75.5", "2024-03-01 13:00:00", DS2),
]

# What the Spark job would have computed from the opportunities above, per ds.
# (owner_id, owner_name, region, won_amount, won_count, closed_count, open_pipeline,
#  opportunity_count, percent_rank)
RANKINGS = {
    DS1: [
        ("005A", "Alice Ahn", "EMEA", "1000.50", 1, 2, "500", 3, 1.0),
        ("005B", "Bob Berg", "AMER", "0", 0, 0, "0", 0, 0.0),
        ("005C", "Cara Old", "EMEA", "0", 0, 1, "700", 2, 0.0),
        ("005D", "Dan Dahl", "AMER", "0", 0, 0, "0", 0, 0.0),
    ],
    DS2: [
        ("005A", "Alice Ahn", "EMEA", "1500.50", 2, 3, "0", 3, 1.0),
        ("005B", "Bob Berg", "AMER", "0", 0, 0, "900", 1, 0.0),
        ("005C", "Cara Cole", "EMEA", "400", 1, 2, "0", 2, 0.0),
        ("005D", "Dan Dahl", "AMER", "250", 1, 1, "0", 1, 1.0),
    ],
}

# Latest users: Bob inactive (newer version), Dan active (the DS2 version is stale).
IS_ACTIVE = {"005A": True, "005B": False, "005C": True, "005D": True}


def seed(conn: psycopg.Connection) -> None:
    from tally import catalog
    from tally.lake import arrow_schema
    from tally.sources.erp import raw_schema
    from tally.warehouse import ensure_table

    now = datetime.now(UTC)
    with conn.cursor() as cur:
        cur.execute(DDL)
    # Every other landed object gets its (empty) raw table exactly as the loader creates it,
    # so each staging model has its source.
    for dataset in catalog.all_raw():
        schema = raw_schema(dataset) if dataset.source == "erp" else arrow_schema(dataset)
        ensure_table(conn, "raw", dataset.warehouse_table, schema)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.sf_user values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(i, n, e, a, r, CREATED, ts(m), ds, now) for i, n, e, a, r, m, ds in USERS],
        )
        cur.executemany(
            "insert into raw.sf_account values (%s, %s, 'DE', 'Tech', %s, %s, %s, %s, %s, %s)",
            [(i, n, o, d, CREATED, ts(m), ds, now) for i, n, o, d, m, ds in ACCOUNTS],
        )
        cur.executemany(
            "insert into raw.sf_opportunity values"
            " (%s, %s, %s, %s, %s, %s, %s, '2024-03-31', %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    i,
                    f"Deal {i}",
                    a,
                    o,
                    st,
                    Decimal(amt),
                    100.0 if won else 10.0,
                    cl,
                    won,
                    d,
                    CREATED,
                    ts(m),
                    ds,
                    now,
                )
                for i, a, o, st, amt, cl, won, d, m, ds in OPPORTUNITIES
            ],
        )
        cur.executemany(
            "insert into raw.erp_customers values (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(c, n, co, ref, CREATED, ts(u), ds, now) for c, n, co, ref, u, ds in CUSTOMERS],
        )
        cur.executemany(
            "insert into raw.erp_sales_orders values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (o, c, od, st, cur_, Decimal(amt), CREATED, ts(u), ds, now)
                for o, c, od, st, cur_, amt, u, ds in ORDERS
            ],
        )
        cur.executemany(
            "insert into curated.rep_rankings values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (o, n, r, Decimal(wa), wc, cc, Decimal(op), oc, pr, ds, now)
                for ds, rows in RANKINGS.items()
                for o, n, r, wa, wc, cc, op, oc, pr in rows
            ],
        )


def expected_mart(ds: str, rankings: list[tuple]) -> dict[tuple[date, str], dict]:
    """The mart rows for one ds, computed by hand from the rankings and the latest users."""
    out = {}
    for o, n, r, wa, wc, cc, op, oc, pr in rankings:
        out[(date.fromisoformat(ds), o)] = {
            "owner_name": n,
            "region": r,
            "won_amount": Decimal(wa),
            "won_count": wc,
            "closed_count": cc,
            "win_rate": None if cc == 0 else Decimal(wc) / Decimal(cc),
            "open_pipeline": Decimal(op),
            "opportunity_count": oc,
            "percent_rank_in_region": pr,
            "is_active": IS_ACTIVE[o],
        }
    return out


MART_COLUMNS = [
    "ds",
    "owner_id",
    "owner_name",
    "region",
    "won_amount",
    "won_count",
    "closed_count",
    "win_rate",
    "open_pipeline",
    "opportunity_count",
    "percent_rank_in_region",
    "is_active",
]


def fetch_mart(conn: psycopg.Connection) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select {', '.join(MART_COLUMNS)} from marts.mart_rep_performance order by ds, owner_id")  # noqa: S608
        return cur.fetchall()


def assert_mart(rows: list[dict], expected: dict[tuple[date, str], dict]) -> None:
    keys = [(r["ds"], r["owner_id"]) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate (ds, owner_id) in mart: {keys}"
    assert set(keys) == set(expected), f"mart keys {sorted(keys)} != expected {sorted(expected)}"
    for row in rows:
        want = expected[(row["ds"], row["owner_id"])]
        for col, value in want.items():
            got = row[col]
            if col == "win_rate" and value is not None:
                assert isinstance(got, Decimal), f"win_rate should be numeric, got {got!r}"
                assert abs(got - value) < Decimal("1e-15"), (row["owner_id"], col, got, value)
            else:
                assert got == value, f"{row['ds']} {row['owner_id']} {col}: got {got!r}, want {value!r}"


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    found = str(beside) if beside.exists() else shutil.which("dbt")
    assert found, "dbt is not installed (pip install -e .)"
    return found


@pytest.fixture
def dbt(warehouse_dsn, tmp_path):
    """Run dbt against the warehouse_dsn database, with private target and log paths."""
    params = conninfo_to_dict(warehouse_dsn)
    env = {
        **os.environ,
        "TALLY_DBT_HOST": str(params.get("host") or "127.0.0.1"),
        "TALLY_DBT_PORT": str(params.get("port") or 5432),
        "TALLY_DBT_USER": str(params.get("user") or os.environ.get("USER", "postgres")),
        "TALLY_DBT_PASSWORD": str(params.get("password") or ""),
        "TALLY_DBT_DBNAME": str(params["dbname"]),
        "TALLY_DBT_SCHEMA": "analytics",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    target_path = tmp_path / "target"

    def run(*args: str, ds: str | None = None) -> dict:
        cmd = [
            dbt_executable(),
            *args,
            "--project-dir",
            str(PROJECT_DIR),
            "--profiles-dir",
            str(PROJECT_DIR),
            "--target-path",
            str(target_path),
            "--log-path",
            str(tmp_path / "logs"),
        ]
        if ds is not None:
            cmd += ["--vars", json.dumps({"ds": ds})]
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - started
        print(f"{' '.join(args)} ds={ds}: rc={proc.returncode} in {elapsed:.1f}s")
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        results_file = target_path / (
            "sources.json" if args[:2] == ("source", "freshness") else "run_results.json"
        )
        return json.loads(results_file.read_text())

    return run


def statuses(run_results: dict) -> dict[str, str]:
    return {r["unique_id"]: r["status"] for r in run_results["results"]}


def not_clean(results: dict[str, str]) -> dict[str, str]:
    """Nodes that did not succeed/pass (exposures report no-op; a warning counts as not clean)."""
    return {
        k: v for k, v in results.items() if v not in ("success", "pass") and not k.startswith("exposure.")
    }


def test_dbt_build_rep_performance(warehouse_dsn, dbt):
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        seed(conn)

        # 1. Build everything for DS2: sources tests, staging, unit test, mart, mart tests.
        results = statuses(dbt("build", ds=DS2))
        unit = {k: v for k, v in results.items() if k.startswith("unit_test.")}
        assert unit == {"unit_test.tally.mart_rep_performance.mart_rep_performance_win_rate": "pass"}
        assert results["model.tally.mart_rep_performance"] == "success"
        assert not not_clean(results), f"not clean: {not_clean(results)}"

        expected = expected_mart(DS2, RANKINGS[DS2])
        assert_mart(fetch_mart(conn), expected)

        # Staging: latest version per key, deleted records gone, clear names.
        with conn.cursor() as cur:
            cur.execute("select user_id, user_name, email, is_active, region from staging.stg_sf__users")
            users = {r[0]: r[1:] for r in cur.fetchall()}
            assert users == {
                "005A": ("Alice Ahn", "alice@example.com", True, "EMEA"),
                "005B": ("Bob Berg", "bob@example.com", False, "AMER"),
                "005C": ("Cara Cole", "cara@example.com", True, "EMEA"),
                "005D": ("Dan Dahl", "dan@new.example.com", True, "AMER"),
            }
            cur.execute("select account_id from staging.stg_sf__accounts order by 1")
            assert [r[0] for r in cur.fetchall()] == ["001A", "001C"]
            cur.execute(
                "select opportunity_id, owner_id, stage_name, stage_category, amount"
                " from staging.stg_sf__opportunities order by 1"
            )
            opps = {r[0]: r[1:] for r in cur.fetchall()}
            assert sorted(opps) == ["006-1", "006-2", "006-3", "006-4", "006-5", "006-6", "006-8"]
            assert opps["006-2"] == ("005A", "Closed Won", "won", Decimal("500"))
            assert opps["006-3"][2] == "lost" and opps["006-5"][2] == "open"
            cur.execute(
                "select customer_id, country, sf_account_id from staging.stg_erp__customers order by 1"
            )
            assert cur.fetchall() == [(1, "AT", "001A"), (2, "GB", "001C")]
            cur.execute(
                "select order_id, order_status, currency_code, total_amount"
                " from staging.stg_erp__sales_orders order by 1"
            )
            assert cur.fetchall() == [
                (10, "shipped", "EUR", Decimal("120.000000001")),
                (11, "open", "GBP", Decimal("75.5")),
            ]

        # 2. Another ds lands beside DS2.
        dbt("run", "--select", "mart_rep_performance", ds=DS1)
        expected |= expected_mart(DS1, RANKINGS[DS1])
        assert_mart(fetch_mart(conn), expected)

        # 3. Spark recomputes DS2 (Alice's amount changes, Dan's row is gone); re-running DS2
        #    replaces exactly DS2: no duplicates, no stale row, DS1 untouched.
        with conn.cursor() as cur:
            cur.execute(
                "update curated.rep_rankings set won_amount = 1600.5 where _ds = %s and owner_id = '005A'",
                (DS2,),
            )
            cur.execute("delete from curated.rep_rankings where _ds = %s and owner_id = '005D'", (DS2,))
        rankings2 = [r for r in RANKINGS[DS2] if r[0] != "005D"]
        rankings2[0] = ("005A", "Alice Ahn", "EMEA", "1600.5", 2, 3, "0", 3, 1.0)
        expected = expected_mart(DS1, RANKINGS[DS1]) | expected_mart(DS2, rankings2)

        results = statuses(dbt("build", ds=DS2))
        assert not not_clean(results), f"not clean on re-run: {not_clean(results)}"
        assert_mart(fetch_mart(conn), expected)

        # 4. Without the var, the run is for the latest ranked ds (DS2): still no duplicates.
        dbt("run", "--select", "mart_rep_performance")
        assert_mart(fetch_mart(conn), expected)
        with conn.cursor() as cur:
            cur.execute("select count(*), count(distinct (ds, owner_id)) from marts.mart_rep_performance")
            total, distinct = cur.fetchone()
            assert total == distinct == len(expected)

        # 5. Freshness is declared on every source table and passes on just-loaded data.
        fresh = dbt("source", "freshness")
        assert {r["unique_id"]: r["status"] for r in fresh["results"]} == {
            f"source.tally.{s}.{t}": "pass"
            for s, t in [
                ("raw", "sf_user"),
                ("raw", "sf_account"),
                ("raw", "sf_opportunity"),
                ("raw", "erp_customers"),
                ("raw", "erp_sales_orders"),
                ("curated", "rep_rankings"),
            ]
        }
