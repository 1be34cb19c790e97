"""The end-of-backfill summary and the live progress, on hand-built ledger flows and API runs."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Console

from tally import contract
from tally.backfill import progress, report
from tally.ledger import Entry
from tally.reconcile.verdict import MART_DATASETS, Code, DagRun, judge

DS = "2026-12-03"


def e(dataset: str, hop: str, rows: int, checksum: str | None = "c1") -> Entry:
    return Entry(DS, dataset, hop, rows, checksum, {})


def flow(rows: int = 10, lose_at_load: int = 0) -> dict[str, dict[str, Entry]]:
    out: dict[str, dict[str, Entry]] = {}
    for d in contract.RAW_DATASETS:
        out[d] = {"source": e(d, "source", rows, None), "raw": e(d, "raw", rows),
                  "warehouse": e(d, "warehouse", rows - (lose_at_load if d == "erp.payments" else 0))}
    for d in contract.CURATED:
        out[d] = {"curated": e(d, "curated", rows), "warehouse": e(d, "warehouse", rows)}
        if d in MART_DATASETS:
            out[d]["mart"] = e(d, "mart", rows)
    return out


def tasks(state: str = "success", **override: str) -> dict[str, str | None]:
    t = {f"land.extract_{d.replace('.', '_')}": state for d in contract.RAW_DATASETS}
    t |= {f"spark_{j}": state for j in contract.SPARK_JOBS}
    t |= {n: state for n in ("land.gate_raw", "land_events", "gate_curated", "load_warehouse", "gate_warehouse",
                             "publish_warehouse", "dbt_build", "gate_mart")}
    return t | override


def result(judgement, status="run", ds=DS, **kw) -> report.DsResult:
    return report.DsResult(ds=ds, source="lake", status=status, rows=report.hop_rows(flow()), judgement=judgement, **kw)


def test_hop_rows_sum_the_datasets_at_each_hop():
    rows = report.hop_rows(flow(rows=10, lose_at_load=3))
    n_raw, n_cur = len(contract.RAW_DATASETS), len(contract.CURATED)
    assert rows == {"source": 10 * n_raw, "raw": 10 * n_raw, "curated": 10 * n_cur,
                    "warehouse": 10 * (n_raw + n_cur) - 3, "mart": 10 * len(MART_DATASETS)}
    assert report.hop_rows({}) == dict.fromkeys(("source", "raw", "curated", "warehouse", "mart"))


def test_status_of_a_ds():
    assert report.status_of(None, in_backfill=False) == "not run"
    assert report.status_of({"state": "success"}, in_backfill=False) == "skipped"
    assert report.status_of({"state": "failed"}, in_backfill=False) == "skipped"
    assert report.status_of({"state": "success"}, in_backfill=True) == "run"
    assert report.status_of({"state": "failed"}, in_backfill=True) == "failed"
    assert report.status_of({"state": "running"}, in_backfill=True) == "running"


def test_money_checks_are_the_amount_and_pipeline_totals():
    assert report.is_money("sum_won_amount") and report.is_money("sum_open_pipeline")
    assert report.is_money("sum_orderless_opportunity_amount_reporting")
    assert not report.is_money("sum_won_count") and not report.is_money("rows")
    assert not report.is_money("sum_bookings_fx_missing")


def test_money_lines_show_before_and_after_and_a_mart_that_did_not_exist():
    before = {"mart_rep_performance": {"sum_won_amount": Decimal("100.50"), "sum_open_pipeline": Decimal("7")},
              "mart_account_health": None}
    after = {"mart_rep_performance": {"sum_won_amount": Decimal("120.00"), "sum_open_pipeline": Decimal("7")},
             "mart_account_health": {"sum_open_pipeline": Decimal("1234.5")}, "mart_o2r_pipeline": None}
    assert report.money_lines(before, after) == [
        "account_health.open_pipeline: · → 1,234.5",
        "o2r_pipeline: no table",
        "rep_performance.open_pipeline: 7 (unchanged)",
        "rep_performance.won_amount: 100.50 → 120.00",
    ]
    fresh = dict.fromkeys(("mart_rep_performance", "mart_account_health"))
    assert report.money_lines(fresh, fresh) == ["no mart tables yet"]


def test_exit_code_is_0_only_when_every_ds_reconciled_else_the_worst():
    ok = judge(flow(), DagRun("r1", "success", tasks()), DS)
    lost = judge(flow(lose_at_load=2), DagRun("r2", "success", tasks()), DS)
    stopped = judge(flow(), DagRun("r3", "failed", tasks(load_warehouse="failed")), DS)
    no_run = judge(flow(), None, DS)
    assert ok.code is Code.OK and lost.code is Code.LOST and stopped.code is Code.NOT_LOADED
    assert report.exit_code([result(ok), result(ok)]) == 0
    assert report.exit_code([result(ok), result(stopped, "failed")]) == 3
    assert report.exit_code([result(stopped, "failed"), result(lost)]) == 1
    assert report.exit_code([result(ok), result(no_run, "not run")]) == 4
    assert report.exit_code([]) == 0


def test_summary_table_has_a_row_per_ds_with_rows_money_and_verdict():
    ok = judge(flow(), DagRun("r1", "success", tasks()), DS)
    stopped = judge(flow(), DagRun("r3", "failed", tasks(load_warehouse="failed")), "2026-12-04")
    before = {"mart_rep_performance": None}
    after = {"mart_rep_performance": {"sum_won_amount": Decimal("42.00")}}
    table = report.summary_table([result(ok, before=before, after=after, seconds=61),
                                  result(stopped, "failed", ds="2026-12-04")])
    console = Console(width=250, record=True)
    console.print(table)
    text = console.export_text()
    assert "2026-12-03" in text and "2026-12-04" in text
    assert "ok: every hop agrees (exit 0)" in text
    assert "rep_performance.won_amount: · → 42.00" in text
    assert "failed" in text and "(exit 3)" in text and "not loaded: load_warehouse failed" in text
    assert f"{10 * len(contract.RAW_DATASETS):,}" in text


def run(ds: str, state: str, queued: str, run_type: str = "backfill", duration: float | None = None) -> dict:
    return {"dag_run_id": f"backfill__{ds}", "logical_date": f"{ds}T00:00:00Z", "state": state,
            "run_type": run_type, "queued_at": queued, "duration": duration}


BACKFILL = {"id": 7, "from_date": "2026-12-02T00:00:00Z", "to_date": "2026-12-05T00:00:00Z",
            "created_at": "2026-12-08T00:10:00Z", "completed_at": None, "is_paused": False}


def test_backfill_runs_are_the_backfill_runs_in_range_queued_after_it_was_created():
    runs = [run("2026-12-02", "success", "2026-12-08T00:10:01Z", duration=100),
            run("2026-12-03", "running", "2026-12-08T00:10:01Z"),
            run("2026-12-04", "success", "2026-12-01T00:00:00Z"),  # an earlier backfill's run: skipped now
            run("2026-12-05", "success", "2026-12-08T00:10:02Z", run_type="scheduled"),
            run("2026-12-06", "queued", "2026-12-08T00:10:01Z")]  # outside the range
    mine = progress.backfill_runs(runs, BACKFILL)
    assert list(mine) == ["2026-12-02", "2026-12-03"]


def test_snapshot_counts_done_and_estimates_from_the_mean_finished_duration():
    runs = {"2026-12-02": run("2026-12-02", "success", "x", duration=100),
            "2026-12-03": run("2026-12-03", "failed", "x", duration=50),
            "2026-12-04": run("2026-12-04", "running", "x"),
            "2026-12-05": run("2026-12-05", "queued", "x")}
    snap = progress.snapshot(runs, elapsed=160)
    assert (snap.total, snap.done, snap.failed, snap.running) == (4, 2, 1, ["2026-12-04"])
    assert snap.eta == 150 and not snap.finished
    assert progress.snapshot({}, 0).eta is None
    console = Console(width=200, record=True)
    console.print(progress.render(BACKFILL, snap, runs, ["spark_rep_rankings"]))
    text = console.export_text()
    assert "2/4 ds done, 1 failed" in text and "ETA 2m30s" in text and "elapsed 2m40s" in text
    assert "running: ds=2026-12-04  task: spark_rep_rankings" in text
