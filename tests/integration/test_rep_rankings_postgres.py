"""rep_rankings ranks exactly as PostgreSQL does: the same opportunities go to the Spark job
(as curated/opportunities) and to a Postgres table, where the contract's aggregation and
``PERCENT_RANK()`` / ``DENSE_RANK()`` window functions run in SQL; every row must be equal.

The data is built for the hard cases: ties in won_amount, owners with no won amount (NULL:
only lost deals, only zero-amount wins, or wins whose FX rate is missing), NULL regions,
single-owner partitions, two quarters, and opportunities without owner or close date.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import curated_world as w
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tally.lake import Lake

pytestmark = pytest.mark.integration

DS = "2024-06-30"
SCHEMA = pa.schema([
    ("opportunity_id", pa.string()), ("owner_id", pa.string()), ("owner_name", pa.string()),
    ("region", pa.string()), ("close_date", pa.date32()), ("is_closed", pa.bool_()), ("is_won", pa.bool_()),
    ("probability", pa.float64()), ("amount", pa.decimal128(38, 9)), ("amount_reporting", pa.decimal128(38, 9)),
])
POSTGRES_RANKINGS = """
WITH per AS (
    SELECT owner_id,
           extract(year FROM close_date)::int || '-Q' || extract(quarter FROM close_date)::int AS quarter,
           max(owner_name) AS owner_name,
           max(region) AS region,
           count(*) AS opportunity_count,
           count(*) FILTER (WHERE coalesce(is_won, false)) AS won_count,
           count(*) FILTER (WHERE coalesce(is_closed, false)) AS closed_count,
           sum(amount_reporting) FILTER (WHERE coalesce(is_won, false) AND amount <> 0) AS won_amount,
           coalesce(sum(amount_reporting) FILTER (WHERE NOT coalesce(is_closed, false)
                                                   AND probability BETWEEN 10 AND 89 AND amount <> 0), 0)
               AS open_pipeline
    FROM opps
    WHERE owner_id IS NOT NULL AND close_date IS NOT NULL
    GROUP BY 1, 2
)
SELECT owner_id || ':' || quarter AS ranking_id, owner_id, owner_name, region, quarter, opportunity_count,
       won_count, closed_count, won_amount, open_pipeline,
       CASE WHEN closed_count > 0 THEN won_count::double precision / closed_count END AS win_rate,
       percent_rank() OVER (PARTITION BY region, quarter ORDER BY won_amount) AS percent_rank,
       dense_rank() OVER (PARTITION BY region, quarter ORDER BY won_amount DESC) AS dense_rank
FROM per
"""


def opportunities() -> list[dict]:
    rng = random.Random(20240630)
    owners = [(f"005R{n:014d}", f"Rep {n}", [None, "EMEA", "AMER", "APAC"][n % 4] if n != 13 else "SOLO")
              for n in range(1, 25)]
    amounts = [Decimal("100"), Decimal("250.5"), Decimal("250.5"), Decimal("999.999999999"), Decimal("0"), None]
    rows, n = [], 0
    for owner_id, name, region in owners:
        for _ in range(rng.randint(1, 5)):
            n += 1
            kind = rng.choice(["won", "won", "lost", "open", "open_edge", "won_no_fx"])
            amount = rng.choice(amounts)
            rows.append({
                "opportunity_id": f"006R{n:014d}", "owner_id": owner_id, "owner_name": name, "region": region,
                "close_date": date(2024, rng.choice([2, 3, 5]), rng.randint(1, 28)),
                "is_closed": kind in ("won", "lost", "won_no_fx"), "is_won": kind in ("won", "won_no_fx"),
                "probability": {"open": rng.choice([10.0, 50.0, 89.0, 90.0]), "open_edge": 9.0}.get(
                    kind, 100.0 if kind != "lost" else 0.0),
                "amount": amount, "amount_reporting": None if kind == "won_no_fx" else amount})
    # Owners whose whole quarter is lost deals: NULL won_amount ties among themselves.
    for i in range(3):
        rows.append({"opportunity_id": f"006L{i:014d}", "owner_id": f"005L{i:014d}", "owner_name": f"Loser {i}",
                     "region": "EMEA", "close_date": date(2024, 2, 1), "is_closed": True, "is_won": False,
                     "probability": 0.0, "amount": Decimal("5"), "amount_reporting": Decimal("5")})
    rows.append({**rows[0], "opportunity_id": "006X00000000000001", "owner_id": None})  # skipped: no owner
    rows.append({**rows[0], "opportunity_id": "006X00000000000002", "close_date": None})  # skipped: no date
    return rows


@pytest.fixture(scope="module")
def spark_rankings(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("ranks") / "lake"
    lake = Lake(str(root))
    path = "curated/opportunities"
    part = lake.path(Lake.partition(path, DS))
    lake.fs.create_dir(part, recursive=True)
    pq.write_table(pa.Table.from_pylist(opportunities(), schema=SCHEMA), f"{part}/part-0.parquet")
    lake.write_manifest(path, DS, {"dataset": "curated.opportunities", "files": ["part-0.parquet"],
                                   "reporting_currency": "USD"})
    w.load_job("rep_rankings").run(spark, str(root), DS)
    return lake


def test_the_data_has_the_hard_cases():
    rows = opportunities()
    assert any(r["region"] is None for r in rows) and any(r["amount_reporting"] is None and r["is_won"] for r in rows)


def test_spark_ranks_equal_postgres_window_functions(spark_rankings, warehouse_conn):
    lake = spark_rankings
    got = {r["ranking_id"]: r for r in lake.read_table("curated/rep_rankings", DS).to_pylist()}
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        conn.execute("CREATE TEMP TABLE opps (opportunity_id text, owner_id text, owner_name text, region text,"
                     " close_date date, is_closed boolean, is_won boolean, probability double precision,"
                     " amount numeric(38,9), amount_reporting numeric(38,9))")
        with conn.cursor().copy("COPY opps FROM STDIN") as copy:
            for row in opportunities():
                copy.write_row([row[f] for f in SCHEMA.names])
        cur = conn.execute(POSTGRES_RANKINGS)
        names = [d.name for d in cur.description]
        want = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}

    assert got.keys() == want.keys()
    assert [c for c in names] == list(next(iter(got.values())))  # same columns, same order
    for key, row in want.items():
        assert got[key] == row, key  # exact: decimals, doubles (percent_rank, win_rate) and ints
    # the cases are really there
    null_won = [r for r in want.values() if r["won_amount"] is None]
    assert len(null_won) >= 4
    assert any(r["dense_rank"] == 1 for r in null_won)  # DESC puts NULLs first in Postgres
    ties = {}
    for r in want.values():
        if r["won_amount"] is not None:
            ties.setdefault((r["region"], r["quarter"], r["won_amount"]), []).append(r)
    assert any(len(v) > 1 for v in ties.values()), "no tie in won_amount within a partition"
    assert any(r["region"] is None for r in want.values())
    solo = [r for r in want.values() if r["region"] == "SOLO"]
    assert solo and all(r["percent_rank"] == 0.0 and r["dense_rank"] == 1 for r in solo)
    manifest = lake.read_manifest("curated/rep_rankings", DS)
    assert manifest["skipped"] == {"no_owner": 1, "no_close_date": 1}
