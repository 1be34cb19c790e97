"""`tally reconcile --ds`'s verdict: the ledger read together with the run's task states."""

from __future__ import annotations

import pytest

from tally import contract
from tally.ledger import Entry
from tally.reconcile.verdict import MART_DATASETS, Code, DagRun, Publication, judge, producer

DS = "2026-04-30"
OPP = "salesforce.Opportunity"


def e(dataset: str, hop: str, rows: int, checksum: str | None = "c1") -> Entry:
    return Entry(DS, dataset, hop, rows, checksum, {})


def healthy_flow(rows: int = 10) -> dict[str, dict[str, Entry]]:
    """Every dataset of tally_daily with the same rows and checksum at every hop it has."""
    flow: dict[str, dict[str, Entry]] = {}
    for d in contract.RAW_DATASETS:
        flow[d] = {"source": e(d, "source", rows, None), "raw": e(d, "raw", rows), "warehouse": e(d, "warehouse", rows)}
    for d in contract.CURATED:
        flow[d] = {"curated": e(d, "curated", rows), "warehouse": e(d, "warehouse", rows)}
        if d in MART_DATASETS:
            flow[d]["mart"] = e(d, "mart", rows)
    return flow


def all_tasks(state: str = "success") -> dict[str, str | None]:
    tasks = {f"land.extract_{d.replace('.', '_')}": state for d in contract.RAW_DATASETS}
    tasks |= {f"spark_{j}": state for j in contract.SPARK_JOBS}
    tasks |= {t: state for t in ("land.gate_raw", "land_events", "gate_curated", "load_warehouse",
                                 "gate_warehouse", "publish_warehouse", "dbt_build", "gate_mart")}
    return tasks


def test_mart_datasets_are_the_mart_gates():
    from tally.gates.mart import MART_LEDGER

    assert {name for name, _mart, _key in MART_LEDGER} == MART_DATASETS


def test_all_good_exits_0():
    j = judge(healthy_flow(), DagRun("r1", "success", all_tasks()), DS)
    assert j.code is Code.OK == 0
    assert {v.code for v in j.verdicts.values()} == {Code.OK}
    assert j.verdicts[OPP].current == {"source", "raw", "warehouse"}
    assert j.headline == "tally_daily run r1: success"


def test_loss_at_a_hop_that_ran_names_the_hop_and_exits_1():
    flow = healthy_flow()
    flow[OPP]["warehouse"] = e(OPP, "warehouse", 8, "c2")
    j = judge(flow, DagRun("r1", "failed", all_tasks() | {"gate_warehouse": "failed", "dbt_build": "upstream_failed",
                                                          "publish_warehouse": "upstream_failed",
                                                          "gate_mart": "upstream_failed"}), DS)
    assert j.code is Code.LOST == 1
    assert j.verdicts[OPP].code is Code.LOST
    assert j.verdicts[OPP].text == "lost raw→warehouse: row count 10 -> 8; staged, not published: gate_warehouse failed"
    # only Opportunity lost rows; the others are staged, and the failed gate kept them from being published
    assert j.verdicts["salesforce.User"].code is Code.NOT_PUBLISHED


def test_checksum_only_difference_is_a_loss():
    flow = healthy_flow()
    flow[OPP]["warehouse"] = e(OPP, "warehouse", 10, "other")
    j = judge(flow, DagRun("r1", "success", all_tasks()), DS)
    assert j.code is Code.LOST
    assert j.verdicts[OPP].text.startswith("lost raw→warehouse: key checksum c1 -> other")


def test_gate_raw_failed_and_load_skipped_is_not_a_loss():
    """The issue's case: the raw partition was re-landed (7 rows), the raw gate failed, the load
    never ran, so the warehouse entry (10 rows) is an earlier run's: not 'lost raw→warehouse'."""
    flow = healthy_flow()
    flow[OPP]["source"] = e(OPP, "source", 7, None)
    flow[OPP]["raw"] = e(OPP, "raw", 7, "c7")
    tasks = all_tasks() | {"land.gate_raw": "failed"}
    tasks |= {t: "upstream_failed" for t in tasks if t.startswith("spark_") or t in (
        "gate_curated", "load_warehouse", "gate_warehouse", "dbt_build", "gate_mart")}
    j = judge(flow, DagRun("r2", "failed", tasks), DS)
    assert j.code is Code.NOT_LOADED == 3
    v = j.verdicts[OPP]
    assert v.code is Code.NOT_LOADED
    assert v.text == "not loaded: land.gate_raw failed, load_warehouse skipped (upstream_failed)"
    assert "lost" not in v.text
    assert v.current == {"source", "raw"}  # the warehouse entry is not this run's
    assert j.verdicts["rep_rankings"].text == ("not curated: land.gate_raw failed, gate_curated skipped "
                                               "(upstream_failed)")
    assert j.headline == "tally_daily run r2: failed; failed: land.gate_raw"


def test_a_loss_in_the_extract_is_named_even_when_the_load_was_skipped():
    flow = healthy_flow()
    flow[OPP]["raw"] = e(OPP, "raw", 9, "c9")  # source counted 10, 9 landed: the raw gate failed
    tasks = all_tasks() | {"land.gate_raw": "failed", "load_warehouse": "upstream_failed"}
    j = judge(flow, DagRun("r2", "failed", tasks), DS)
    assert j.code is Code.LOST
    assert j.verdicts[OPP].text == ("lost source→raw: row count 10 -> 9; not loaded: land.gate_raw failed, "
                                    "load_warehouse skipped (upstream_failed)")


def test_failed_extract_is_not_extracted_and_stops_the_load_of_the_others():
    flow = healthy_flow()
    del flow["erp.payments"]  # first run ever: nothing in the ledger for it
    tasks = all_tasks() | {"land.extract_erp_payments": "failed", "load_warehouse": "upstream_failed"}
    j = judge(flow, DagRun("r3", "failed", tasks), DS)
    assert j.code is Code.NOT_LOADED
    assert j.verdicts["erp.payments"].text == "not extracted: land.extract_erp_payments failed"
    assert j.verdicts["erp.customers"].text == ("not loaded: land.extract_erp_payments failed, load_warehouse "
                                                "skipped (upstream_failed)")


def test_no_run_exits_4_even_with_ledger_entries():
    j = judge(healthy_flow(), None, DS)
    assert j.code is Code.NO_RUN == 4
    assert j.headline == f"tally_daily has not run for ds {DS}"
    assert all(v.code is Code.NO_RUN and not v.current for v in j.verdicts.values())
    assert judge({}, None, DS).code is Code.NO_RUN


def test_a_run_in_progress_exits_5():
    tasks = all_tasks() | {t: None for t in ("load_warehouse", "gate_warehouse", "publish_warehouse", "dbt_build",
                                             "gate_mart")}
    tasks["gate_curated"] = "running"
    j = judge(healthy_flow(), DagRun("r4", "running", tasks), DS)
    assert j.code is Code.IN_PROGRESS == 5
    assert j.verdicts[OPP].text == "in progress: load_warehouse not started"
    assert j.verdicts["rep_rankings"].text == "in progress: gate_curated running"


def test_a_failed_run_whose_hops_agree_is_not_0():
    tasks = all_tasks() | {"gate_mart": "failed"}  # a domain check failed; every count agrees
    j = judge(healthy_flow(), DagRun("r5", "failed", tasks), DS)
    assert {v.code for v in j.verdicts.values()} == {Code.OK}  # the failed gate's hop is this run's
    assert j.code is Code.NOT_LOADED
    assert "failed: gate_mart" in j.headline


def test_airflow_unknown_falls_back_to_the_ledger_and_says_so():
    flow = healthy_flow()
    flow[OPP]["warehouse"] = e(OPP, "warehouse", 8)
    j = judge(flow, None, DS, airflow_known=False)
    assert j.code is Code.LOST
    assert j.verdicts[OPP].text == "lost raw→warehouse: row count 10 -> 8 (ledger only)"
    assert "ledger alone" in j.headline
    assert judge(healthy_flow(), None, DS, airflow_known=False).code is Code.OK
    assert judge({}, None, DS, airflow_known=False).code is Code.NO_RUN


@pytest.mark.parametrize(("dataset", "hop", "task"), [
    (OPP, "raw", "land.extract_salesforce_Opportunity"), ("erp.order_lines", "warehouse", "load_warehouse"),
    ("erp.order_lines", "published", "publish_warehouse"), ("order_links", "published", "publish_warehouse"),
    ("opportunities", "curated", "gate_curated"), ("rep_rankings", "mart", "gate_mart"),
    ("kafka.activity", "raw", "land_events")])
def test_producers(dataset, hop, task):
    assert producer(dataset, hop)[0] == task


def test_the_events_dataset_is_judged_by_land_events():
    flow = {"kafka.activity": {"raw": e("kafka.activity", "raw", 5)}}
    j = judge(flow, DagRun("r1", "success", all_tasks()), DS)
    assert j.verdicts["kafka.activity"].code is Code.OK


def test_a_failed_warehouse_gate_is_staged_not_published_exit_7():
    """Write–audit–publish: the hops agree, the gate failed (another table, or a domain check), so
    every table's ds is staged and nothing was published: not 'ok', not 'mart not built'."""
    tasks = all_tasks() | {"gate_warehouse": "failed"} | {t: "upstream_failed" for t in (
        "publish_warehouse", "dbt_build", "gate_mart")}
    j = judge(healthy_flow(), DagRun("r6", "failed", tasks), DS)
    assert j.code is Code.NOT_PUBLISHED == 7
    for dataset in (OPP, "rep_rankings", "opportunities"):
        assert j.verdicts[dataset].code is Code.NOT_PUBLISHED
        assert j.verdicts[dataset].text == "staged, not published: gate_warehouse failed"
    failed_publish = all_tasks() | {"publish_warehouse": "failed", "dbt_build": "upstream_failed",
                                    "gate_mart": "upstream_failed"}
    j = judge(healthy_flow(), DagRun("r7", "failed", failed_publish), DS)
    assert (j.code, j.verdicts[OPP].text) == (Code.NOT_PUBLISHED, "staged, not published: publish_warehouse failed")


def test_a_run_without_publish_is_not_published_unless_the_warehouse_says_it_published():
    tasks = {t: s for t, s in all_tasks().items() if t != "publish_warehouse"}
    j = judge(healthy_flow(), DagRun("r8", "success", tasks), DS)
    assert j.code is Code.NOT_PUBLISHED
    assert j.verdicts[OPP].text == "staged, not published: publish has not run (missing from the run)"
    published = Publication(staged=False, gate_passed=None, published_at="2026-05-01T00:00:00+00:00",
                            published_run="r8")
    assert judge(healthy_flow(), DagRun("r8", "success", tasks), DS, publication=published).code is Code.OK
    in_progress = all_tasks() | {"publish_warehouse": "queued", "dbt_build": None, "gate_mart": None}
    j = judge(healthy_flow(), DagRun("r9", "running", in_progress), DS)
    assert (j.code, j.verdicts[OPP].text) == (Code.IN_PROGRESS, "in progress: publish_warehouse queued")


def test_ledger_only_reads_the_warehouse_staging_state():
    gate_failed = Publication(staged=True, gate_passed=False)
    j = judge(healthy_flow(), None, DS, airflow_known=False, publication=gate_failed)
    assert j.code is Code.NOT_PUBLISHED
    assert j.verdicts[OPP].text == "staged, not published: gate_warehouse failed (ledger only)"
    waiting = Publication(staged=True, gate_passed=True)
    j = judge(healthy_flow(), None, DS, airflow_known=False, publication=waiting)
    assert j.verdicts[OPP].text == "staged, not published: publish has not run (ledger only)"
    assert judge(healthy_flow(), None, DS, airflow_known=False, publication=Publication()).code is Code.OK


def test_a_ds_built_before_a_raw_day_was_landed_again_is_stale_not_ok():
    why = "state ds=2026-01-05 is stale: raw ds=2026-01-03 was re-committed after it was built"
    j = judge(healthy_flow(), DagRun("r1", "success", all_tasks()), "2026-01-05",
              stale={"erp.customers": why})
    assert j.code is Code.STALE and int(j.code) == 8
    assert j.verdicts["erp.customers"].code is Code.STALE and why in j.verdicts["erp.customers"].text
    assert "stale: built before erp.customers changed" in j.headline
    # a loss is reported as a loss first; staleness only turns an otherwise clean ds
    flow = healthy_flow()
    flow["erp.customers"]["warehouse"] = e("erp.customers", "warehouse", 9)
    assert judge(flow, DagRun("r1", "success", all_tasks()), "2026-01-05", stale={"erp.customers": why}).code \
        is Code.LOST
    assert judge(healthy_flow(), DagRun("r1", "success", all_tasks()), "2026-01-05", stale={}).code is Code.OK
