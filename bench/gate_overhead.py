"""Every gate of the daily DAG, timed as a task pays it, as a fraction of the stage it guards.

On a private embedded stack seeded at the given scale, one logical date goes through the daily
DAG's stages in order, each in its own process *forked from a parent that ran
``tally.airflow.preload.preload()``*: exactly how Airflow runs them on the embedded stack (the
scheduler preloads Great Expectations, the LocalExecutor forks its workers from it after a
``gc.freeze()``, and each worker forks a task process per task). Every stage and gate pays its
own imports and connections in the child, as a task does.

=========  ===================================  ==========================================
hop        gate (``tally.gates``)               stage it guards
=========  ===================================  ==========================================
raw        ``gate_raw`` (one task,              the 13 ``extract`` tasks, run as the DAG
           ``land.gate_raw``, every dataset)    runs them: ``--slots`` (default 4, the
                                                embedded stack's ``AIRFLOW__CORE__PARALLELISM``)
                                                at a time; the stage is their wall time
curated    ``gate_curated``                     the Spark job (``spark-submit``)
warehouse  ``gate_warehouse``                   ``load``
mart       ``gate_mart``                        ``dbt_build``
=========  ===================================  ==========================================

The raw hop's stage is the wall time from the first extract's start to the last one's end: what
the gate is measured against is the land stage as the DAG runs it. (Their summed own times are
larger, as they share the cores; ``--slots 1`` runs them one after another.) Each extract's own
time is listed under the table.

``GATE_BENCH_PROFILE=gate_mart,load`` prints a profile of those steps on stderr
(``GATE_BENCH_PROFILE_LINES``, default 30). ``--cold`` adds each gate run in a fresh interpreter
(GX imported by the gate itself: what every gate task paid before the preload). Last line:
``gate_overhead: max_fraction=…`` over every gate measured. Goal ≤ 0.10.

    .venv/bin/python bench/gate_overhead.py --opportunities 200000 [--cold] [--slots 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DS = "2026-06-30"
AS_OF = datetime(2026, 7, 1, tzinfo=UTC)


# -- the runner: a fresh interpreter that preloads GX and forks one child per step ----------------
def _step(kind: str, arg: str, ds: str, spark_job: str) -> None:
    """One DAG task's work, in the (forked) child."""
    from tally.core.dates import ds_interval
    from tally.gates.curated import gate_curated
    from tally.gates.mart import gate_mart
    from tally.gates.raw import gate_raw
    from tally.gates.warehouse import gate_warehouse
    from tally.load.stage import load
    from tally.stages.dbt import dbt_build
    from tally.stages.extract import extract
    from tally_local.stack.manager import Stack

    res = Stack().resources(run_id=f"bench__{ds}")
    if kind == "extract":
        start, end = ds_interval(ds)
        extract(res, arg, ds, start, end)
    elif kind == "spark":
        from tally.spark_submit import py_files, spark_env, spark_submit_bin

        cmd = [spark_submit_bin(), "--master", "local[2]", "--conf", "spark.sql.session.timeZone=UTC",
               "--py-files", py_files(), spark_job, "--lake", res.lake.uri, "--ds", ds]
        proc = subprocess.run(cmd, env=spark_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"spark-submit exit {proc.returncode}: {proc.stderr[-1500:]}")
    elif kind == "gate_raw":  # the DAG's land.gate_raw: the datasets whose extract succeeded
        gate_raw(res, ds, [a for a in arg.split(",") if a])
    else:
        stages = {"gate_curated": gate_curated, "load": load, "gate_warehouse": gate_warehouse,
                  "dbt_build": dbt_build, "gate_mart": gate_mart}
        stages[kind](res, ds)


def _forked(kind: str, arg: str, ds: str, spark_job: str) -> dict:
    """Run one step in a child forked from this (preloaded) process, as the LocalExecutor does."""
    return _finish(*_start(kind, arg, ds, spark_job))


def _forked_concurrently(kind: str, args: list[str], ds: str, spark_job: str, slots: int) -> tuple[dict, float]:
    """Run one step per argument, ``slots`` children at a time (as the executor runs a DAG's
    independent tasks); returns each one's result and the wall time from first start to last end."""
    todo, running, results = list(args), {}, {}
    started = time.perf_counter()
    while todo or running:
        while todo and len(running) < slots:
            arg = todo.pop(0)
            pid, read = _start(kind, arg, ds, spark_job)
            running[pid] = (arg, read)
        pid, _ = os.waitpid(-1, 0)
        if pid in running:
            arg, read = running.pop(pid)
            results[arg] = _finish(pid, read, waited=True)
    return results, time.perf_counter() - started


def _start(kind: str, arg: str, ds: str, spark_job: str) -> tuple[int, int]:
    import gc

    read, write = os.pipe()
    gc.freeze()  # what LocalExecutor does before forking its workers
    pid = os.fork()
    if pid == 0:  # the task process
        os.close(read)
        started = time.perf_counter()
        status = "ok"
        try:
            if kind in os.environ.get("GATE_BENCH_PROFILE", "").split(","):  # where the time goes, on stderr
                import cProfile
                import pstats

                profile = cProfile.Profile()
                profile.runcall(_step, kind, arg, ds, spark_job)
                pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(int(os.environ.get("GATE_BENCH_PROFILE_LINES", "30")))
            else:
                _step(kind, arg, ds, spark_job)
        except Exception as exc:  # a gate's DataProblem is an outcome, anything else an error
            kind_name = type(exc).__name__
            status = "failed" if kind_name == "DataProblem" else f"error: {kind_name}: {str(exc)[-600:]}"
        out = json.dumps({"seconds": time.perf_counter() - started, "status": status}).encode()
        os.write(write, out)
        os._exit(0)
    gc.unfreeze()
    os.close(write)
    return pid, read


def _finish(pid: int, read: int, waited: bool = False) -> dict:
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    if not waited:
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b'{"seconds": 0, "status": "error: child died"}')


def _cold(kind: str, arg: str, ds: str) -> dict:
    """The gate in a fresh interpreter (no preload): what a gate task paid before."""
    code = "\n".join([
        "import json, sys, time",
        "t = time.perf_counter()",
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})",
        "import gate_overhead as b",
        "status = 'ok'",
        f"try: b._step({kind!r}, {arg!r}, {ds!r}, '')",
        "except Exception as e: status = 'failed' if type(e).__name__ == 'DataProblem' else 'error: ' + str(e)[-300:]",
        "print(json.dumps({'seconds': time.perf_counter() - t, 'status': status}))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"seconds": 0, "status": f"error: {out.stderr[-300:]}"}


def runner(ds: str, spark_job: str, cold: bool, slots: int) -> None:
    started = time.perf_counter()
    from tally.airflow.preload import preload

    preload()
    preload_s = time.perf_counter() - started
    from tally import catalog
    from tally_local.stack.manager import Stack  # noqa: F401  the bench's own way to its resources, loaded once

    rows = []
    datasets = [d.dataset_id for d in catalog.all_raw()]
    print(f"  {len(datasets)} extracts, {slots} at a time", file=sys.stderr, flush=True)
    extracts, wall = _forked_concurrently("extract", datasets, ds, spark_job, slots)
    landed = [d for d in datasets if extracts[d]["status"] == "ok"]
    failed = [f"extract {d}: {extracts[d]['status']}" for d in datasets if extracts[d]["status"] != "ok"]
    g = _forked("gate_raw", ",".join(landed), ds, spark_job)
    c = _cold("gate_raw", ",".join(landed), ds) if cold else None
    rows.append({"hop": "raw", "gate": "gate_raw", "stage": f"{len(datasets)} extracts, {slots} at a time",
                 "arg": "", "stage_s": wall, "stage_status": "; ".join(failed) or "ok",
                 "stage_sum_s": sum(r["seconds"] for r in extracts.values()),
                 "extracts": {d: r["seconds"] for d, r in extracts.items()},
                 "gate_s": g["seconds"], "gate_status": g["status"], "cold_s": c["seconds"] if c else None})
    for hop, gate, stage in (("curated", "gate_curated", "spark"), ("warehouse", "gate_warehouse", "load"),
                             ("mart", "gate_mart", "dbt_build")):
        print(f"  {stage}", file=sys.stderr, flush=True)
        s = _forked(stage, "", ds, spark_job)
        g = _forked(gate, "", ds, spark_job)
        c = _cold(gate, "", ds) if cold else None
        rows.append({"hop": hop, "gate": gate, "stage": stage, "arg": "", "stage_s": s["seconds"],
                     "stage_status": s["status"], "gate_s": g["seconds"], "gate_status": g["status"],
                     "cold_s": c["seconds"] if c else None})
    print(json.dumps({"preload_s": preload_s, "slots": slots, "rows": rows}))


# -- the driver -----------------------------------------------------------------------------------
def default_spark_job() -> str:
    """The application(s) the daily DAG submits before gate_curated: all curated jobs in one
    application when the repository has it (a lower bound for the stage), else rep_rankings."""
    from tally.spark_submit import job_path

    for name in ("all_curated", "rep_rankings"):
        if job_path(name).exists():
            return str(job_path(name))
    raise SystemExit("no Spark job found in spark_jobs/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--cold", action="store_true", help="also time each gate in a fresh interpreter")
    parser.add_argument("--spark-job", default=None, help="Spark application guarded by gate_curated")
    parser.add_argument("--slots", type=int, default=4,
                        help="extracts run at a time (the embedded stack's AIRFLOW__CORE__PARALLELISM)")
    parser.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    spark_job = args.spark_job or default_spark_job()
    if args.runner:
        runner(DS, spark_job, args.cold, max(1, args.slots))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    home = tempfile.mkdtemp(prefix="tally-gate-bench-")
    env = {**os.environ, "TALLY_HOME": home}
    os.environ["TALLY_HOME"] = home
    from tally_local import generator
    from tally_local.seed import seed_erp, seed_salesforce
    from tally_local.stack.manager import Stack

    stack = Stack()
    try:
        with console.status("starting a private stack and seeding"):
            stack.up(progress=lambda _: None, with_airflow=False)
            n = args.opportunities
            data = generator.generate(generator.Scale(accounts=max(50, n // 5), opportunities=n, users=40, days=1),
                                      seed=1, as_of=AS_OF)
            seed_salesforce(stack.state["sfsim"]["db"], data)
            seed_erp(stack.postgres("erp"), data)
        console.print("running the daily DAG's stages, each forked from a GX-preloaded parent:")
        cmd = [sys.executable, __file__, "--runner", "--spark-job", spark_job, "--slots", str(args.slots)] + (
            ["--cold"] if args.cold else [])
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"the runner failed (exit {proc.returncode})")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        stack.remove(progress=lambda _: None)

    out = Console()
    table = Table(title=f"Gate vs the stage it guards, forked from a GX-preloaded parent "
                        f"({args.opportunities:,} opportunities; preload {report['preload_s']:.1f} s, once)")
    columns = ["hop", "gate", "stage", "stage s", "gate s", "fraction", "gate outcome"]
    if args.cold:
        columns[5:5] = ["gate s (fresh interpreter)", "fraction (fresh)"]
    for col in columns:
        table.add_column(col, justify="left" if col in ("hop", "gate", "stage", "gate outcome") else "right")
    worst, problems = 0.0, []
    for r in report["rows"]:
        name = f"{r['gate']} {r['arg']}".strip()
        if r["stage_status"] != "ok":
            problems.append(f"{r['stage']} {r['arg']}: {r['stage_status']}")
        if r["gate_status"].startswith("error"):
            problems.append(f"{name}: {r['gate_status']}")
        fraction = r["gate_s"] / r["stage_s"] if r["stage_s"] > 0 else float("inf")
        measured = r["stage_status"] == "ok" and not r["gate_status"].startswith("error")
        if measured:
            worst = max(worst, fraction)
        cells = [r["hop"], name, f"{r['stage']} {r['arg']}".strip(), f"{r['stage_s']:.2f}", f"{r['gate_s']:.2f}",
                 f"{fraction:.3f}" if measured else "n/a", r["gate_status"].split(":")[0]]
        if args.cold:
            cold = r["cold_s"] or 0.0
            cells[5:5] = [f"{cold:.2f}", f"{cold / r['stage_s']:.2f}" if r["stage_s"] > 0 else "n/a"]
        table.add_row(*cells)
    out.print(table)
    for problem in problems:
        out.print(f"[yellow]not measured:[/] {problem}")
    for r in report["rows"]:
        if r.get("extracts"):  # the raw hop: the extracts' work, and each one's own time
            out.print(f"raw: {len(r['extracts'])} extracts, {report['slots']} at a time: {r['stage_s']:.2f} s wall; "
                      f"their own times (s), summed {r['stage_sum_s']:.2f}:")
            out.print("[dim]  " + ", ".join(f"{d} {t:.2f}" for d, t in r["extracts"].items()) + "[/]")
    print(f"gate_overhead: max_fraction={worst:.3f}")


if __name__ == "__main__":
    main()
