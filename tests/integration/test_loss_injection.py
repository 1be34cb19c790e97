"""Inject a loss at each hop and check the gate at that hop catches it, with the right numbers.

One pipeline run (every stage but Airflow) prepares a ds; each test breaks one hop, asserts the
gate for that hop fails saying what and how many, then heals the hop and sees the gate pass.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from tally import catalog, ledger
from tally.core.dates import ds_interval
from tally.core.errors import DataProblem
from tally.gates.curated import gate_curated, live_keys
from tally.gates.mart import gate_mart
from tally.gates.raw import gate_raw
from tally.gates.warehouse import gate_warehouse
from tally.load.stage import load
from tally.load.wap import publish
from tally.stages.dbt import dbt_build
from tally.stages.extract import extract
from tally_local import generator
from tally_local.seed import seed_erp, seed_salesforce

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
DS = "2026-06-30"


@pytest.fixture(scope="module")
def world(stack, spark, warehouse_conn_module, tmp_path_factory):
    import all_curated  # spark_jobs/ (pyproject's pytest pythonpath)
    import opportunity_enrichment

    from tally.lake import Lake

    data = generator.generate(generator.Scale(accounts=30, opportunities=150, users=6, days=4), seed=3, as_of=AS_OF)
    seed_salesforce(stack.state["sfsim"]["db"], data)
    seed_erp(stack.postgres("erp"), data)
    res = stack.resources()
    res.lake = Lake(str(tmp_path_factory.mktemp("loss") / "lake"))
    res.warehouse = warehouse_conn_module
    start, end = ds_interval(DS)
    for dataset in catalog.all_raw():
        extract(res, dataset.dataset_id, DS, start, end)
    gate_raw(res, DS)  # the DAG's one raw gate, every dataset
    all_curated.run(spark, res.lake.uri, DS)
    gate_curated(res, DS)
    load(res, DS)
    gate_warehouse(res, DS)
    publish(res, DS)
    dbt_build(res, DS)
    gate_mart(res, DS)
    return res, data, opportunity_enrichment, spark


@pytest.fixture(scope="module")
def warehouse_conn_module(new_database):
    return new_database("loss")


def failures_recorded(res, hop: str, dataset: str) -> int:
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        return conn.execute("SELECT count(*) FROM ops.validation_results WHERE ds = %s AND hop = %s AND dataset = %s"
                            " AND NOT success", (DS, hop, dataset)).fetchone()[0]


def test_a_clean_run_passes_every_gate_and_the_ledger_agrees(world):
    res, data, _, _ = world
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        flow = ledger.flow(conn, DS)
    for dataset in catalog.all_raw():
        assert ledger.first_divergence(flow[dataset.dataset_id]) is None, dataset.dataset_id
    assert ledger.first_divergence(flow["rep_rankings"]) is None
    assert flow["rep_rankings"]["mart"].row_count == flow["rep_rankings"]["curated"].row_count > 0


def test_deleted_landed_file_is_caught_by_the_raw_gate(world):
    from tally.alerts.model import failure_alerts

    res, *_ = world
    opp = catalog.SALESFORCE["Opportunity"]
    files = res.lake.files(opp.lake_path, DS)
    victim = files[0]
    os.remove(victim)
    with pytest.raises(DataProblem,
                       match=rf"raw.salesforce.Opportunity: 0/1 passed; manifest_files_present observed 1 of "
                             rf"{len(files)} file\(s\) the manifest lists are gone") as info:
        gate_raw(res, DS)  # every dataset, as the DAG's land.gate_raw
    (failed,) = info.value.results  # only the damaged dataset failed; the 12 others passed
    assert (failed.dataset, failed.hop, failed.failures[0]["sample"]) == (
        "salesforce.Opportunity", "raw", [victim.rsplit("/", 1)[-1]])
    assert failures_recorded(res, "raw", "salesforce.Opportunity") == 1
    with psycopg.connect(res.warehouse.conninfo()) as conn:  # every dataset's verdict was stored, in one go
        stored = conn.execute("SELECT count(DISTINCT dataset) FROM ops.validation_results WHERE ds = %s"
                              " AND hop = 'raw' AND run_at = (SELECT max(run_at) FROM ops.validation_results"
                              " WHERE ds = %s AND hop = 'raw')", (DS, DS)).fetchone()[0]
    assert stored == len(catalog.all_raw())
    (alert,) = failure_alerts("tally_daily", DS, "land.gate_raw", info.value)  # reported once, for that dataset
    assert (alert.gate, alert.category, alert.dataset) == (
        "land.gate_raw:salesforce.Opportunity", "raw_gate", "salesforce.Opportunity")
    start, end = ds_interval(DS)
    extract(res, opp.dataset_id, DS, start, end)  # heal: re-extract the ds
    assert gate_raw(res, DS)


def test_rows_dropped_in_the_load_are_caught_by_the_warehouse_gate(world):
    """Rows lost between the lake and the staged slice: the gate fails, nothing is published."""
    res, data, _, _ = world
    load(res, DS)  # staged again (wap_raw.*), the published slice stays
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        published = conn.execute("SELECT count(*) FROM raw.sf_opportunity WHERE _ds = %s", (DS,)).fetchone()[0]
        before = conn.execute("SELECT count(*) FROM wap_raw.sf_opportunity WHERE _ds = %s", (DS,)).fetchone()[0]
        dropped = sorted(r[0] for r in conn.execute(
            "DELETE FROM wap_raw.sf_opportunity WHERE ctid IN "
            "(SELECT ctid FROM wap_raw.sf_opportunity WHERE _ds = %s LIMIT 3) RETURNING id", (DS,)))
    with pytest.raises(DataProblem) as info:
        gate_warehouse(res, DS)
    message = str(info.value)
    assert f"warehouse_row_count_equals_manifest observed {before - 3} expected {before}" in message
    assert "warehouse.salesforce.Opportunity" in message and "salesforce.User" not in message
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        div = ledger.first_divergence(ledger.flow(conn, DS)["salesforce.Opportunity"])
    assert div[:2] == ("raw", "warehouse")
    assert failures_recorded(res, "warehouse", "salesforce.Opportunity") == 1
    from tally.reconcile.keys import key_diff

    diff = key_diff(res.lake, res.warehouse, "salesforce.Opportunity", DS)
    assert (diff.left, diff.right, diff.missing, diff.extra_count) == ("raw", "warehouse", dropped, 0)
    with pytest.raises(DataProblem, match="staged but not published"):
        publish(res, DS)
    with psycopg.connect(res.warehouse.conninfo()) as conn:  # what analysts read is untouched
        assert conn.execute("SELECT count(*) FROM raw.sf_opportunity WHERE _ds = %s", (DS,)).fetchone()[0] == published
    load(res, DS)  # heal
    assert key_diff(res.lake, res.warehouse, "salesforce.Opportunity", DS).missing_count == 0
    gate_warehouse(res, DS)
    assert publish(res, DS)["published"] is True


def test_a_broken_spark_join_is_caught_by_the_curated_gate(world, monkeypatch):
    res, data, job, spark = world
    original = job.build_opportunities

    def inner_join_on_a_few_accounts(opps, accounts, users):
        few = accounts.limit(10)
        return original(opps.join(few.select("Id"), opps["AccountId"] == few["Id"], "left_semi"), few, users)

    monkeypatch.setattr(job, "build_opportunities", inner_join_on_a_few_accounts)
    job.run(spark, res.lake.uri, DS)
    live = len(live_keys(res.lake, "salesforce.Opportunity", DS))
    got = res.lake.read_manifest("curated/opportunities", DS)["row_count"]
    assert got < live
    with pytest.raises(DataProblem, match=f"expect_table_row_count_to_equal observed {got} expected {live}"):
        gate_curated(res, DS)
    monkeypatch.setattr(job, "build_opportunities", original)
    job.run(spark, res.lake.uri, DS)  # heal
    gate_curated(res, DS)


def test_a_mangled_mart_is_caught_by_the_mart_gate(world):
    res, *_ = world
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        conn.execute("UPDATE marts.mart_rep_performance SET won_amount = won_amount + 0.01 "
                     "WHERE ctid IN (SELECT ctid FROM marts.mart_rep_performance WHERE ds = %s"
                     " AND won_amount IS NOT NULL LIMIT 1)", (DS,))
    with pytest.raises(DataProblem, match="mart_sum_won_amount_equals_curated") as caught:
        gate_mart(res, DS)
    failed = [f for r in caught.value.results for f in r.failures
              if f["expectation"] == "mart_sum_won_amount_equals_curated"]
    assert len(failed) == 1 and Decimal(failed[0]["difference"]) == Decimal("0.01")  # exact, not a float
    assert failures_recorded(res, "mart", "mart_rep_performance") == 1
    dbt_build(res, DS, select="+mart_rep_performance")  # heal: rebuild the ds
    gate_mart(res, DS)
