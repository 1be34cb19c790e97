"""The dbt stage inside Airflow beside a bare ``dbt build``: how much does orchestration cost?

On a private embedded Postgres holding the hand-made warehouse of
``tests/integration/test_dbt_project.py`` (every raw and curated table, four marts' worth of
cases), this times, for one ds:

=================  ==========================================================================
``bare``           ``dbt build --vars {ds}`` in a subprocess: the baseline
``single_task``    the DAG's ``dbt_build`` task (``tally.stages.dbt.dbt_build``: one ``dbt build``)
                   run by Airflow (``dag.test()``)
``cosmos``         astronomer-cosmos ``DbtTaskGroup`` from the precompiled manifest
                   (``LoadMode.DBT_MANIFEST``, ``ExecutionMode.LOCAL``, in-process dbtRunner,
                   ``TestBehavior.AFTER_EACH``: one run task and one test task per model) run by
                   Airflow (``dag.test()``)
=================  ==========================================================================

``dag.test()`` runs the tasks one after another in this process, without scheduler or executor
latency and without a process per task: a *lower bound* of what the scheduler pays (LocalExecutor
forks a task process per task; on this 2-core machine at most 2 run at once). The first
``dag.test()`` of a process costs ~11 s of one-time set-up that a running scheduler has already
paid, so each timed run follows a no-op DAG's run in the same process. Each variant runs
``--repeat`` times; the median counts. Last line: ``dbt_in_airflow: overhead_ratio=…`` of the
variant the DAG uses (``single_task``) over ``bare``; ``cosmos_ratio`` is printed beside it.
Goal ≤ 1.2.

    .venv/bin/uv pip install --python .venv/bin/python -e '.[bench]'   # astronomer-cosmos
    .venv/bin/python bench/dbt_in_airflow.py [--repeat 2] [--skip-cosmos]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from tally import contract

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "dbt_project"
DS = "2024-03-02"

# The two DAGs, written into the bench's own dags folder (dag.test() runs only serialized DAGs).
DAGS_FILE = textwrap.dedent('''
    import os
    from pathlib import Path

    import pendulum
    from airflow.sdk import DAG, task

    PROJECT, DS, TARGET = Path(os.environ["BENCH_PROJECT"]), os.environ["BENCH_DS"], os.environ["BENCH_TARGET"]
    START = pendulum.datetime(2024, 1, 1, tz="UTC")

    with DAG(dag_id="bench_warm_up", schedule=None, start_date=START, catchup=False) as warm_up:
        @task
        def nothing():
            return None

        nothing()

    with DAG(dag_id="bench_dbt_single_task", schedule=None, start_date=START, catchup=False) as single_task:
        @task
        def dbt_build():
            from tally.core.config import PostgresConn
            from tally.core.resources import Resources
            from tally.lake import Lake
            from tally.stages.dbt import dbt_build

            env = os.environ
            wh = PostgresConn(env["TALLY_DBT_HOST"], int(env["TALLY_DBT_PORT"]), env["TALLY_DBT_USER"],
                              env["TALLY_DBT_PASSWORD"], env["TALLY_DBT_DBNAME"])
            dbt_build(Resources(lake=Lake(TARGET), warehouse=wh), DS)

        dbt_build()

    with DAG(dag_id="bench_dbt_cosmos", schedule=None, start_date=START, catchup=False) as cosmos:
        from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
        from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

        from tally.contract import dbt_vars

        DbtTaskGroup(
            group_id="dbt",
            project_config=ProjectConfig(manifest_path=Path(TARGET) / "manifest.json", project_name="tally",
                                         dbt_vars={**dbt_vars(), "ds": DS}, partial_parse=True),
            profile_config=ProfileConfig(profile_name="tally", target_name="local",
                                         profiles_yml_filepath=PROJECT / "profiles.yml"),
            execution_config=ExecutionConfig(execution_mode=ExecutionMode.LOCAL,
                                             invocation_mode=InvocationMode.DBT_RUNNER, dbt_project_path=PROJECT),
            render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.AFTER_EACH),
        )
''')

CHILD = textwrap.dedent('''
    import importlib.util, json, os, sys, time
    from pathlib import Path

    variant = sys.argv[1]
    path = Path(os.environ["AIRFLOW_HOME"]) / "dags" / "bench_dbt.py"
    spec = importlib.util.spec_from_file_location("bench_dbt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, variant)
    # The first dag.test() in a process pays ~11 s of one-time imports and set-up (the task
    # runner, the SDK's supervisor…); the scheduler's executor pays that once when it starts, not
    # per task. A no-op DAG pays it here, outside the timing.
    module.warm_up.test()
    started = time.monotonic()
    run = dag.test()
    elapsed = time.monotonic() - started
    print(json.dumps({"variant": variant, "seconds": elapsed, "tasks": len(dag.tasks), "state": str(run.state)}))
''')


def start_postgres(home: Path):
    from tally_local.stack.manager import Stack

    stack = Stack(home=home)
    home.mkdir(parents=True, exist_ok=True)
    stack._ensure_state()
    pg = stack._pg()
    pg.start()
    pg.create_databases()
    return stack, pg


def seed_database(stack, name: str):
    import psycopg
    from psycopg import sql

    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from test_dbt_project import seed  # the hand-made warehouse of the dbt integration test

    with psycopg.connect(stack.postgres("postgres").conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn_info = stack.postgres(name)
    with psycopg.connect(conn_info.conninfo(), autocommit=True) as conn:
        seed(conn)
    return conn_info


def dbt_env(wh) -> dict[str, str]:
    return {**os.environ, "TALLY_DBT_HOST": wh.host, "TALLY_DBT_PORT": str(wh.port), "TALLY_DBT_USER": wh.user,
            "TALLY_DBT_PASSWORD": wh.password, "TALLY_DBT_DBNAME": wh.dbname, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def bare_build(env: dict, target: Path) -> float:
    cmd = [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(PROJECT), "--profiles-dir",
           str(PROJECT), "--target-path", str(target), "--vars", json.dumps({**contract.dbt_vars(), "ds": DS})]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{proc.stdout[-3000:]}")
    return elapsed


def airflow_run(variant: str, env: dict, target: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, variant], env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(lines[-1])
    if "success" not in out["state"].lower():
        raise RuntimeError(f"{variant} DAG run ended {out['state']}:\n{proc.stdout[-3000:]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-cosmos", action="store_true")
    args = ap.parse_args()
    if not args.skip_cosmos and importlib.util.find_spec("cosmos") is None:
        print("astronomer-cosmos is not installed (pip install -e '.[bench]'): skipping the cosmos variant")
        args.skip_cosmos = True

    with tempfile.TemporaryDirectory(prefix="bench-dbt-airflow-") as tmp:
        tmp_path = Path(tmp)
        stack, pg = start_postgres(tmp_path / "stack")
        try:
            wh = seed_database(stack, f"bench_{uuid.uuid4().hex[:8]}")
            target = tmp_path / "target"
            env = dbt_env(wh)
            env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "TALLY_HOME": str(tmp_path / "tally"),
                        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}"})
            dags = tmp_path / "airflow" / "dags"
            dags.mkdir(parents=True)
            (dags / "bench_dbt.py").write_text(DAGS_FILE)
            env.update({"BENCH_PROJECT": str(PROJECT), "BENCH_DS": DS, "BENCH_TARGET": str(target),
                        "AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
            subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                           capture_output=True)
            bare_build(env, target)  # warm-up: creates the relations, partial-parse file and manifest.json
            airflow_run("single_task", env, target)  # warm-up: dbt_build's own target dir (as after day one)
            times: dict[str, list[float]] = {"bare": [], "single_task": [], "cosmos": []}
            tasks: dict[str, int] = {}
            for _ in range(args.repeat):
                times["bare"].append(bare_build(env, target))
                out = airflow_run("single_task", env, target)
                times["single_task"].append(out["seconds"])
                tasks["single_task"] = out["tasks"]
                if not args.skip_cosmos:
                    out = airflow_run("cosmos", env, target)
                    times["cosmos"].append(out["seconds"])
                    tasks["cosmos"] = out["tasks"]
        finally:
            stack.remove(progress=lambda _: None)  # the server, and (as root) its data under /var/tmp
    median = {k: statistics.median(v) for k, v in times.items() if v}
    for k, v in median.items():
        print(f"{k:12s} {v:8.1f} s  ({len(times[k])} runs, {tasks.get(k, 1)} task(s))")
    cosmos = f" cosmos_ratio={median['cosmos'] / median['bare']:.2f}" if "cosmos" in median else ""
    print(f"dbt_in_airflow: overhead_ratio={median['single_task'] / median['bare']:.2f}{cosmos}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
