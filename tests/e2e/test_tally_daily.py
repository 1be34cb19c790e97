"""End to end: seed, run tally_daily for one ds through the real Airflow scheduler, then check
the mart against the generator's ground truth (computed here, independently) and the ledger."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from support.ground_truth import expected_rep_performance, expected_revenue_totals

from tally import catalog
from tally.lake.checksum import checksum
from tally_local import generator
from tally_local.seed import seed_erp, seed_salesforce

pytestmark = pytest.mark.e2e

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
DS = "2026-10-31"
SCALE = generator.Scale(accounts=60, opportunities=400, users=9, days=20)


def run_dag(stack, ds: str) -> tuple[str, dict]:
    from tally.cli.airflow_api import AirflowClient
    from tally.core.dates import ds_interval
    from tally_local.stack.airflow import ADMIN_USER

    client = AirflowClient(stack.airflow_url, ADMIN_USER, stack.state["airflow"]["admin_password"])
    client.wait_for_dag("tally_daily", timeout=300)
    client.unpause("tally_daily")
    start, end = ds_interval(ds)
    run_id = client.start_run("tally_daily", start, end, run_id=f"e2e__{ds}__{int(time.time())}")
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        run = client.run("tally_daily", run_id)
        if run["state"] in ("success", "failed"):
            break
        time.sleep(3)
    states = {t.task_id: t.state for t in client.tasks("tally_daily", run_id)}
    if run["state"] != "success":
        logs = "\n".join(
            f"--- {t} ---\n{client.task_log('tally_daily', run_id, t)[-3000:]}"
            for t, s in states.items() if s == "failed"
        )
        pytest.fail(f"tally_daily ended {run['state']}: {states}\n{logs}")
    return run["state"], states


def test_one_day_through_every_stage(airflow_stack):
    stack = airflow_stack
    data = generator.generate(SCALE, seed=11, as_of=AS_OF)
    seed_salesforce(stack.state["sfsim"]["db"], data)
    seed_erp(stack.postgres("erp"), data)

    state, tasks = run_dag(stack, DS)
    assert state == "success"
    assert all(s == "success" for s in tasks.values()), tasks

    expected = expected_rep_performance(data)
    with psycopg.connect(stack.postgres("warehouse").conninfo()) as conn:
        rows = conn.execute(
            "SELECT ranking_id, owner_id, region, quarter, won_amount, won_count, closed_count, open_pipeline,"
            " opportunity_count, win_rate, percent_rank_in_region, dense_rank_in_region"
            " FROM marts.mart_rep_performance WHERE ds = %s", (DS,)
        ).fetchall()
        revenue = conn.execute(
            "SELECT sum(bookings_count), sum(billings_count), sum(collections_count), sum(billings_amount),"
            " sum(collections_amount) FROM marts.mart_revenue_by_country WHERE ds = %s", (DS,)).fetchone()
        o2r_orders, o2r_phases = conn.execute(
            "SELECT count(order_id), count(DISTINCT phase) FROM marts.mart_o2r_pipeline WHERE ds = %s", (DS,)
        ).fetchone()
        accounts = conn.execute("SELECT count(*) FROM marts.mart_account_health WHERE ds = %s", (DS,)).fetchone()[0]
        ledger_rows = conn.execute(
            "SELECT dataset, hop, row_count, key_checksum FROM ops.ledger WHERE ds = %s", (DS,)
        ).fetchall()
        publications = conn.execute("SELECT cardinality(tables), rows FROM ops.publications WHERE ds = %s",
                                    (DS,)).fetchall()

    # write–audit–publish: publish_warehouse switched every table of the ds at once, exactly once
    assert [p[0] for p in publications] == [len(catalog.all_raw()) + len(catalog.CURATED_KEYS)], publications

    # (a) the marts equal what the ground truth implies
    assert {r[0] for r in rows} == set(expected)
    for rid, owner_id, region, q, won, won_n, closed_n, open_p, n, win_rate, prank, drank in rows:
        e = expected[rid]
        assert (owner_id, region, q) == (e["owner_id"], e["region"], e["quarter"])
        assert won == e["won_amount"], rid
        assert (won_n, closed_n, n) == (e["won_count"], e["closed_count"], e["opportunity_count"])
        assert open_p == e["open_pipeline"], rid
        if e["win_rate"] is None:
            assert win_rate is None
        else:
            assert abs(win_rate - e["win_rate"]) < Decimal("1e-9")
        assert prank == pytest.approx(e["percent_rank"]) and drank == e["dense_rank"], rid
    truth = expected_revenue_totals(data)
    assert dict(zip(truth, revenue, strict=True)) == truth
    assert o2r_orders == len(data.erp["sales_orders"]) and o2r_phases > 1
    assert accounts == sum(1 for a in data.salesforce["Account"] if not a["IsDeleted"])

    # (b) the ledger agrees at every hop, and with the ground truth
    ledger: dict[str, dict[str, tuple[int, str | None]]] = defaultdict(dict)
    for dataset, hop, count, chk in ledger_rows:
        ledger[dataset][hop] = (count, chk)
    for source, objects in (("salesforce", data.salesforce), ("erp", data.erp)):
        for name, records in objects.items():
            hops = ledger[f"{source}.{name}"]
            key = catalog.get(f"{source}.{name}").key
            truth_hop = (len(records), checksum(r[key] for r in records))
            assert hops["source"][0] == truth_hop[0], f"{source}.{name} source"
            assert hops["raw"] == truth_hop, f"{source}.{name} raw"
            assert hops["warehouse"] == truth_hop, f"{source}.{name} warehouse"
    rank = ledger["rep_rankings"]
    assert rank["curated"] == rank["warehouse"] == rank["mart"]
    assert rank["mart"] == (len(expected), checksum(expected))
    links = ledger["order_links"]
    orders = data.erp["sales_orders"]
    assert links["curated"] == links["warehouse"] == links["mart"] == (
        len(orders), checksum(o["order_id"] for o in orders))
