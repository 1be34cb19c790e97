# ruff: noqa: S608 - the SQL is built from constants and the catalog
"""What one day costs as history grows: the same daily change after ×1 and ×10 days of history.

For each history size (``--days`` and ``--days × --factor`` days) on one embedded stack (Postgres
for the ERP and the warehouse, the Salesforce simulator, a local lake; no Airflow):

1. a demo-scale world (``--opportunities``, default 1,000) is generated and changed one day at a
   time by ``tally_local.evolve`` (about 5 % of records changed per day, as many created as
   deleted, so the live set stays level while history grows); each day is landed before the next
   day's changes, as the daily run does (not timed);
2. the last history day runs through every stage (not timed), so the measured day starts from a
   processed previous day, as in production;
3. the measured day (the same size of change at both history sizes) runs through every stage of
   ``tally_daily`` in-process, each stage timed: extract (every dataset), the raw gate, Spark (as
   the DAG submits it: ``tally.spark_submit``), the curated gate, load, the warehouse gate,
   publish, ``dbt build`` and the mart gate. Rows added to the warehouse that day are counted.

Airflow's own overhead (scheduling, task start-up) is not in the numbers; ``make demo`` prints the
whole DAG's time. Last line::

    daily_vs_history: growth=… spark_growth=… warehouse_rows_growth=… small_day_s=…

``growth``: the measured day's seconds at ×factor ÷ at ×1; ``spark_growth`` the same for Spark;
``warehouse_rows_growth``: rows the day added to the warehouse at ×factor ÷ at ×1;
``small_day_s``: the measured day's seconds at ×1. Goals (issue 17): ≤ 1.2, ≤ 1.2, ≤ 1.2, ≤ 60.

    .venv/bin/python bench/daily_vs_history.py [--days 3] [--factor 10] [--opportunities 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

STAGES = ("extract", "gate_raw", "spark", "gate_curated", "load", "gate_warehouse", "publish", "dbt", "gate_mart")
FIRST_DAY = date(2026, 9, 1)
console = Console()


def spark_stage(lake_uri: str, ds: str) -> None:
    """The curated jobs as the DAG submits them: ``spark_jobs/all_curated.py``, one application."""
    from tally.spark_submit import spark_env, submit_command

    for job in SPARK_JOBS:
        cmd = submit_command(job, ["--lake", lake_uri, "--ds", ds],
                             conf={"spark.sql.session.timeZone": "UTC"})
        done = subprocess.run(cmd, env=spark_env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"spark job {job} failed for ds={ds}:\n{done.stderr[-3000:]}")


SPARK_JOBS = ("all_curated",)  # tally_daily's spark_curated task


def run_day(res, ds: str) -> dict[str, float]:
    """Every stage of one ds, in the DAG's order; seconds per stage."""
    from tally import contract
    from tally.core.dates import ds_interval
    from tally.gates import curated, mart, raw, warehouse
    from tally.load import stage as load_stage
    from tally.load import wap
    from tally.stages import dbt
    from tally.stages import extract as extract_stage

    start, end = ds_interval(ds)
    steps: dict[str, Callable[[], object]] = {
        "extract": lambda: [extract_stage.extract(res, d, ds, start, end) for d in contract.RAW_DATASETS],
        "gate_raw": lambda: raw.gate_raw(res, ds, list(contract.RAW_DATASETS)),
        "spark": lambda: spark_stage(res.lake.uri, ds),
        "gate_curated": lambda: curated.gate_curated(res, ds),
        "load": lambda: load_stage.load(res, ds),
        "gate_warehouse": lambda: warehouse.gate_warehouse(res, ds),
        "publish": lambda: wap.publish(res, ds),
        "dbt": lambda: dbt.dbt_build(res, ds),
        "gate_mart": lambda: mart.gate_mart(res, ds),
    }
    seconds = {}
    for name in STAGES:
        began = time.monotonic()
        steps[name]()
        seconds[name] = time.monotonic() - began
    return seconds


def warehouse_rows(conn_info) -> int:
    """Rows in every table of the warehouse's published schemas (raw, curated, marts)."""
    import psycopg

    with psycopg.connect(conn_info.conninfo()) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables"
                              " WHERE table_schema IN ('raw', 'curated', 'marts') AND table_type = 'BASE TABLE'"
                              ).fetchall()
        return sum(conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()[0] for s, t in tables)


def measure(stack, home: Path, history: int, opportunities: int) -> tuple[dict[str, float], int, int, int]:
    """Seconds per stage of the day after ``history`` landed days; warehouse rows it added; live
    opportunities; raw rows it landed (the day's change)."""
    import psycopg
    from psycopg import sql

    from tally import catalog, contract
    from tally.core.config import PostgresConn
    from tally.core.dates import ds_interval
    from tally.lake import Lake
    from tally.stages import extract as extract_stage
    from tally_local import generator
    from tally_local.evolve import next_day
    from tally_local.seed import seed_erp, seed_salesforce

    name = f"wh_history_{history}"
    admin = stack.postgres("postgres")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    res = stack.resources()
    lake_dir = home / f"lake-{history}"
    res.lake = Lake(str(lake_dir))
    res.warehouse = PostgresConn(admin.host, admin.port, admin.user, admin.password, name)
    days = [(FIRST_DAY + timedelta(days=k)).isoformat() for k in range(history + 1)]
    scale = generator.Scale(accounts=max(20, opportunities // 5), opportunities=opportunities, days=20)
    data = generator.generate(scale, seed=3, as_of=datetime.combine(FIRST_DAY, datetime.min.time(), UTC)
                              + timedelta(days=1))

    def change_and_seed(k: int, ds: str) -> None:
        nonlocal data
        if k:
            data = next_day(data, date.fromisoformat(ds), created=0.01, deleted=0.01)
        seed_salesforce(stack.state["sfsim"]["db"], data)
        seed_erp(stack.postgres("erp"), data)

    with console.status(f"history ×{history} days: landing") as status:
        for k, ds in enumerate(days[:-1]):
            status.update(f"history {history} days: landing {ds}")
            change_and_seed(k, ds)
            start, end = ds_interval(ds)
            for dataset_id in contract.RAW_DATASETS:
                extract_stage.extract(res, dataset_id, ds, start, end)
        status.update(f"history {history} days: processing {days[-2]} (not timed)")
        _process_landed(res, days[-2])
        status.update(f"history {history} days: the measured day {days[-1]}")
        change_and_seed(len(days) - 1, days[-1])
        before = warehouse_rows(res.warehouse)
        seconds = run_day(res, days[-1])
        added = warehouse_rows(res.warehouse) - before
    live = sum(1 for o in data.salesforce["Opportunity"] if not o["IsDeleted"])
    landed = sum(res.lake.read_manifest(catalog.get(d).lake_path, days[-1])["row_count"] for d in contract.RAW_DATASETS)
    shutil.rmtree(lake_dir, ignore_errors=True)
    return seconds, added, live, landed


def _process_landed(res, ds: str) -> None:
    """Every stage after extract for a landed ds (the previous day, not timed)."""
    from tally import contract
    from tally.gates import curated, mart, raw, warehouse
    from tally.load import stage as load_stage
    from tally.load import wap
    from tally.stages import dbt

    raw.gate_raw(res, ds, list(contract.RAW_DATASETS))
    spark_stage(res.lake.uri, ds)
    curated.gate_curated(res, ds)
    load_stage.load(res, ds)
    warehouse.gate_warehouse(res, ds)
    wap.publish(res, ds)
    dbt.dbt_build(res, ds)
    mart.gate_mart(res, ds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3, help="history at ×1, in days (default 3)")
    parser.add_argument("--factor", type=int, default=10, help="the larger history is this many times longer")
    parser.add_argument("--opportunities", type=int, default=1000, help="live opportunities (demo scale: 1000)")
    args = parser.parse_args(argv)
    try:
        from tally_local.stack.manager import Stack
    except ModuleNotFoundError:
        console.print("The bench needs the local rig: make install  (or: uv pip install -e '.[dev,local]')")
        return 2
    home = Path(tempfile.mkdtemp(prefix="tally-bench-history-"))
    os.environ["TALLY_HOME"] = str(home)  # the stack's state, dbt's target, the Spark library zip
    stack = Stack(home=home)
    results = {}
    try:
        with console.status("starting the embedded stack (no Airflow)"):
            stack.up(progress=lambda _: None, with_airflow=False)
        for history in (args.days, args.days * args.factor):
            results[history] = measure(stack, home, history, args.opportunities)
    finally:
        stack.remove(progress=lambda _: None)
        shutil.rmtree(home, ignore_errors=True)
    small, large = args.days, args.days * args.factor
    (s1, rows1, live1, landed1), (s10, rows10, live10, landed10) = results[small], results[large]
    table = Table(title=f"one day after {small} vs {large} days of history "
                        f"(live opportunities {live1:,} vs {live10:,})", title_justify="left")
    for column in ("stage", f"×1 ({small} d) s", f"×{args.factor} ({large} d) s", "ratio"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in STAGES:
        table.add_row(stage, f"{s1[stage]:.1f}", f"{s10[stage]:.1f}", f"{s10[stage] / max(s1[stage], 1e-9):.2f}")
    total1, total10 = sum(s1.values()), sum(s10.values())
    table.add_row("[bold]day[/bold]", f"{total1:.1f}", f"{total10:.1f}", f"{total10 / total1:.2f}")
    table.add_row("raw rows landed (the day's change)", f"{landed1:,}", f"{landed10:,}",
                  f"{landed10 / max(landed1, 1):.2f}")
    table.add_row("warehouse rows added", f"{rows1:,}", f"{rows10:,}", f"{rows10 / max(rows1, 1):.2f}")
    console.print(table)
    print(f"daily_vs_history: growth={total10 / total1:.2f} spark_growth={s10['spark'] / s1['spark']:.2f} "
          f"warehouse_rows_growth={rows10 / max(rows1, 1):.2f} small_day_s={total1:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
