"""End to end: `tally backfill` of five days through the real Airflow scheduler (Airflow's own
backfill runs), interrupted and resumed, then run again; every ds's marts equal the ground truth
of that day, computed here from the generator's data alone.

The lake is built the way production builds it (and `tally land-days` builds it locally): each day
the sources change (``tally_local.evolve``) and that day is landed before the next day's changes,
so the lake holds what the daily run saw on the day. The backfill rebuilds every ds from the lake (curated zone, warehouse, marts, gates)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from support.ground_truth import expected_rep_performance, expected_revenue_totals

from tally.core.dates import ds_interval
from tally_local import generator
from tally_local.evolve import land_day, next_day

pytestmark = pytest.mark.e2e

DAYS = [(date(2026, 11, 10) + timedelta(days=k)).isoformat() for k in range(5)]
SCALE = generator.Scale(accounts=40, opportunities=300, users=8, days=20)
TALLY = str(Path(sys.executable).with_name("tally"))
MARTS = ("mart_rep_performance", "mart_o2r_pipeline", "mart_revenue_by_country", "mart_account_health")


@pytest.fixture(scope="module")
def days(airflow_stack):
    """Five days landed one after another, each after that day's changes; the truth of each day.
    Afterwards the days are removed from the shared stack (``forget_days``)."""
    stack = airflow_stack
    res = stack.resources()
    first = datetime.fromisoformat(DAYS[0]).replace(tzinfo=UTC)
    data = generator.generate(SCALE, seed=5, as_of=first + timedelta(days=1))
    truth = {}
    for k, ds in enumerate(DAYS):
        if k:
            data = next_day(data, date.fromisoformat(ds))
        land_day(res, stack.state["sfsim"]["db"], stack.postgres("erp"), data, ds)  # as `tally land-days` does
        truth[ds] = data
    yield truth
    forget_days(stack, DAYS)


def forget_days(stack, days: list[str]) -> None:
    """Remove this world's days from the shared stack's lake and warehouse, so the next e2e test's
    world (another synthetic source) never meets them."""
    import shutil

    from psycopg import sql

    from tally.lake.store import local_root

    root = local_root(stack.state["lake_uri"])
    for ds in days:
        for folder in root.glob(f"*/**/ds={ds}"):
            shutil.rmtree(folder, ignore_errors=True)
    with psycopg.connect(stack.postgres("warehouse").conninfo(), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE column_name IN ('_ds', 'ds') AND table_schema IN ('raw', 'curated', 'marts', 'wap_raw', 'wap_curated')"
            " AND (table_schema, table_name) IN (SELECT table_schema, table_name FROM information_schema.tables"
            "  WHERE table_type = 'BASE TABLE')").fetchall()
        for schema, table, column in tables:
            conn.execute(sql.SQL("DELETE FROM {}.{} WHERE {}::text = ANY(%s)").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)), (days,))


def tally(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([TALLY, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def client(stack):
    from tally.cli.airflow_api import AirflowClient
    from tally_local.stack.airflow import ADMIN_USER

    return AirflowClient(stack.airflow_url, ADMIN_USER, stack.state["airflow"]["admin_password"])


def successful_runs(api, ds_list: list[str]) -> dict[str, list[dict]]:
    runs = {}
    for ds in ds_list:
        start, _ = ds_interval(ds)
        runs[ds] = [r for r in api.runs_at("tally_daily", start) if r["state"] == "success"]
    return runs


def mart_hashes(conn, ds: str) -> dict[str, tuple[int, str]]:
    """Rows and an order-independent hash of every mart's slice for ds."""
    out = {}
    for mart in MARTS:
        out[mart] = conn.execute(
            f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "  # noqa: S608
            f"FROM marts.{mart} t WHERE ds = %s", (ds,)).fetchone()
    return out


def assert_marts_match_the_day(conn, ds: str, data: generator.SyntheticData) -> None:
    expected = expected_rep_performance(data)
    rows = conn.execute(
        "SELECT ranking_id, won_amount, won_count, closed_count, open_pipeline, opportunity_count, dense_rank_in_region"
        " FROM marts.mart_rep_performance WHERE ds = %s", (ds,)).fetchall()
    assert {r[0] for r in rows} == set(expected), ds
    for rid, won, won_n, closed_n, open_p, n, drank in rows:
        e = expected[rid]
        assert (won, won_n, closed_n, open_p, n, drank) == (
            e["won_amount"], e["won_count"], e["closed_count"], e["open_pipeline"], e["opportunity_count"],
            e["dense_rank"]), (ds, rid)
    revenue = conn.execute(
        "SELECT sum(bookings_count), sum(billings_count), sum(collections_count), sum(billings_amount),"
        " sum(collections_amount) FROM marts.mart_revenue_by_country WHERE ds = %s", (ds,)).fetchone()
    truth = expected_revenue_totals(data)
    assert dict(zip(truth, revenue, strict=True)) == truth, ds
    orders = conn.execute("SELECT count(order_id), count(DISTINCT order_id) FROM marts.mart_o2r_pipeline"
                          " WHERE ds = %s", (ds,)).fetchone()
    assert orders == (len(data.erp["sales_orders"]),) * 2, ds  # every live order once: no duplicate, no gap
    accounts = conn.execute("SELECT count(*) FROM marts.mart_account_health WHERE ds = %s", (ds,)).fetchone()[0]
    assert accounts == sum(1 for a in data.salesforce["Account"] if not a["IsDeleted"]), ds


def test_a_past_day_the_lake_does_not_hold_is_refused_before_anything_runs(airflow_stack, days):
    before = DAYS[0]
    refused_ds = (date.fromisoformat(before) - timedelta(days=3)).isoformat()
    done = tally("backfill", "--start", refused_ds, "--end", DAYS[1])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"ds={refused_ds} cannot be built exactly" in done.stdout + done.stderr
    start, _ = ds_interval(refused_ds)
    assert client(airflow_stack).runs_at("tally_daily", start) == []  # nothing was created


def test_backfill_interrupted_resumed_and_repeated(airflow_stack, days):
    stack = airflow_stack
    api = client(stack)

    # 1. start the backfill; once two ds are done, interrupt the command (Ctrl-C) and cancel the
    #    backfill in Airflow, as an operator stopping it half-way would
    proc = subprocess.Popen([TALLY, "backfill", "--start", DAYS[0], "--end", DAYS[-1]], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(1 for runs in successful_runs(api, DAYS).values() if runs) >= 2:
            break
        time.sleep(5)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "keeps running in Airflow" in out, out
    active = api.backfills("tally_daily", active_only=True)
    assert len(active) == 1, active
    api.cancel_backfill(active[0]["id"])

    # 2. the same command again completes the range: the done ds are skipped, the rest run
    resumed = tally("backfill", "--start", DAYS[0], "--end", DAYS[-1])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    runs = successful_runs(api, DAYS)
    assert all(len(r) == 1 for r in runs.values()), runs  # one successful run per ds: no gap, no duplicate
    with psycopg.connect(stack.postgres("warehouse").conninfo()) as conn:
        for ds in DAYS:
            assert_marts_match_the_day(conn, ds, days[ds])
        published = dict(conn.execute("SELECT ds::text, count(*) FROM ops.publications WHERE ds = ANY(%s)"
                                      " GROUP BY ds", ([date.fromisoformat(d) for d in DAYS],)).fetchall())
        hashes = {ds: mart_hashes(conn, ds) for ds in DAYS}
    assert set(published) == set(DAYS), published

    # 3. the same backfill again changes nothing; reprocessing a completed ds gives the same marts
    again = tally("backfill", "--start", DAYS[0], "--end", DAYS[-1])
    assert again.returncode == 0, again.stdout + again.stderr
    redo = tally("backfill", "--start", DAYS[2], "--end", DAYS[2], "--reprocess", "completed")
    assert redo.returncode == 0, redo.stdout + redo.stderr
    with psycopg.connect(stack.postgres("warehouse").conninfo()) as conn:
        assert {ds: mart_hashes(conn, ds) for ds in DAYS} == hashes
