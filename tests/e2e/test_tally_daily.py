"""End to end: seed, run tally_daily for one ds through the real Airflow scheduler, then check
the mart against the generator's ground truth (computed here, independently) and the ledger."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from tally import catalog, generator
from tally.checksum import checksum
from tally.seed import seed_erp, seed_salesforce

pytestmark = pytest.mark.e2e

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
DS = "2026-10-31"
SCALE = generator.Scale(accounts=60, opportunities=400, users=9, days=20)


def expected_rep_performance(data: generator.SyntheticData) -> dict[str, dict]:
    """What mart_rep_performance must hold, from the ground truth alone."""
    users = {u["Id"]: u for u in data.salesforce["User"]}
    agg: dict[str, dict] = {uid: {"won": Decimal(0), "won_n": 0, "closed_n": 0, "open": Decimal(0), "n": 0}
                            for uid in users}
    for o in data.salesforce["Opportunity"]:
        if o["IsDeleted"] or o["OwnerId"] not in agg:
            continue
        a = agg[o["OwnerId"]]
        a["n"] += 1
        if o["IsWon"]:
            a["won"] += o["Amount"]
            a["won_n"] += 1
        if o["IsClosed"]:
            a["closed_n"] += 1
        else:
            a["open"] += o["Amount"]
    by_region: dict[str, list[Decimal]] = defaultdict(list)
    for uid, a in agg.items():
        by_region[users[uid]["Region__c"]].append(a["won"])
    out = {}
    for uid, a in agg.items():
        peers = by_region[users[uid]["Region__c"]]
        lower = sum(1 for w in peers if w < a["won"])
        out[uid] = {
            "region": users[uid]["Region__c"],
            "won_amount": a["won"],
            "won_count": a["won_n"],
            "closed_count": a["closed_n"],
            "open_pipeline": a["open"],
            "opportunity_count": a["n"],
            "win_rate": (Decimal(a["won_n"]) / a["closed_n"]) if a["closed_n"] else None,
            "percent_rank": lower / (len(peers) - 1) if len(peers) > 1 else 0.0,
        }
    return out


def run_dag(stack, ds: str) -> tuple[str, dict]:
    from tally.airflow_client import AirflowClient
    from tally.generator import ds_interval
    from tally.stack.airflow import ADMIN_USER

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
            "SELECT owner_id, region, won_amount, won_count, closed_count, open_pipeline, opportunity_count,"
            " win_rate, percent_rank_in_region FROM marts.mart_rep_performance WHERE ds = %s", (DS,)
        ).fetchall()
        ledger_rows = conn.execute(
            "SELECT dataset, hop, row_count, key_checksum FROM ops.ledger WHERE ds = %s", (DS,)
        ).fetchall()

    # (a) the mart equals what the ground truth implies
    assert {r[0] for r in rows} == set(expected)
    for owner_id, region, won, won_n, closed_n, open_p, n, win_rate, prank in rows:
        e = expected[owner_id]
        assert region == e["region"]
        assert won == e["won_amount"], owner_id
        assert (won_n, closed_n, n) == (e["won_count"], e["closed_count"], e["opportunity_count"])
        assert open_p == e["open_pipeline"]
        if e["win_rate"] is None:
            assert win_rate is None
        else:
            assert abs(win_rate - e["win_rate"]) < Decimal("1e-9")
        assert prank == pytest.approx(e["percent_rank"])

    # (b) the ledger agrees at every hop, and with the ground truth
    ledger: dict[str, dict[str, tuple[int, str | None]]] = defaultdict(dict)
    for dataset, hop, count, chk in ledger_rows:
        ledger[dataset][hop] = (count, chk)
    for source, objects in (("salesforce", data.salesforce), ("erp", data.erp)):
        for name, records in objects.items():
            hops = ledger[f"{source}.{name}"]
            key = catalog.get(f"{source}.{name}").key
            truth = (len(records), checksum(r[key] for r in records))
            assert hops["source"][0] == truth[0], f"{source}.{name} source"
            assert hops["raw"] == truth, f"{source}.{name} raw"
            assert hops["warehouse"] == truth, f"{source}.{name} warehouse"
    rank = ledger["rep_rankings"]
    assert rank["curated"] == rank["warehouse"] == rank["mart"]
    assert rank["mart"][0] == len(expected)
    assert rank["mart"][1] == checksum(expected)
