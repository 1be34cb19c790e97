"""`tally run`: trigger tally_daily for one ds through Airflow's REST API, watch it, summarise."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tally.cli import common, params
from tally.cli.common import console
from tally.cli.output import print_line

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from tally.cli.airflow_api import AirflowClient
    from tally.core.config import PostgresConn
    from tally.core.profile import Profile

DAG_ID = "tally_daily"
ANALYST_QUERY = "table marts.mart_rep_performance"
STATE_STYLE = {"success": "green", "failed": "red", "upstream_failed": "red", "running": "yellow",
               "queued": "cyan", "scheduled": "cyan", "up_for_retry": "magenta", "skipped": "dim"}


def airflow_client(profile: Profile):
    from tally.cli.airflow_api import AirflowClient

    if profile.airflow is None:
        console.print("[red]The profile names no Airflow API[/red] (its \"airflow\" entry).")
        raise typer.Exit(1)
    return AirflowClient(profile.airflow.url, profile.airflow.user, profile.airflow.password)


def trigger_and_watch(profile: Profile, ds: str, timeout: float = 1800, conf: dict | None = None) -> dict:
    """Trigger tally_daily for ds through the scheduler and show live progress; returns the run."""
    from tally.core.dates import ds_interval

    client = airflow_client(profile)
    with console.status("waiting for the dag-processor to parse tally_daily"):
        client.wait_for_dag(DAG_ID)
    client.unpause(DAG_ID)
    start, end = ds_interval(ds)
    run_id = fresh_run(client, DAG_ID, start, end, run_id=f"tally__{ds}__{int(time.time())}", conf=conf)
    deadline = time.monotonic() + timeout
    began = time.monotonic()
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            run = client.run(DAG_ID, run_id)
            tasks = client.tasks(DAG_ID, run_id)
            live.update(_progress_table(ds, run, tasks, time.monotonic() - began))
            if run["state"] in ("success", "failed") or time.monotonic() > deadline:
                break
            time.sleep(2)
    if run["state"] != "success":
        failed = [t for t in tasks if t.state in ("failed", "upstream_failed")]
        for t in failed[:2]:
            if t.state == "failed":
                log = client.task_log(DAG_ID, run_id, t.task_id, max(t.try_number, 1))
                console.print(f"[red]--- {t.task_id} log (tail) ---[/red]\n" + "\n".join(log.splitlines()[-40:]))
    return run


def fresh_run(client: AirflowClient, dag_id: str, start: datetime, end: datetime, run_id: str,
              conf: dict | None = None) -> str:
    """Run ``dag_id`` for the interval as a new DAG run, whose task instances start at try 1.

    Airflow keeps one run per logical date, and clearing it keeps every task instance's try number
    (``clear_task_instances`` only raises ``max_tries`` to ``try_number + retries``), so try numbers
    would pile up over re-runs and exponential backoff grow with them. A finished run of the ds is
    therefore deleted (its log files stay on disk under its own run id; Tally's ledger, gate results
    and alerts keep its run id) and a new one triggered. A run still in progress is left alone.
    """
    from tally.cli.airflow_api import TERMINAL

    for old in client.runs_at(dag_id, start):
        if old["state"] not in TERMINAL:
            console.print(f"[red]{dag_id} for {start:%Y-%m-%d} is still {old['state']}[/red] "
                          f"(run {escape(old['dag_run_id'])}): wait for it to finish, then run it again.")
            raise typer.Exit(1)
        r = client.http.delete(f"{client.base_url}/api/v2/dags/{dag_id}/dagRuns/{quote(old['dag_run_id'], safe='')}",
                               timeout=client.timeout)
        if r.status_code >= 400 and r.status_code != 404:
            raise RuntimeError(f"delete {dag_id}/{old['dag_run_id']} failed ({r.status_code}): {r.text[:500]}")
    client.trigger(dag_id, start, end, run_id=run_id, conf=conf)
    return run_id


def _progress_table(ds: str, run: dict, tasks, elapsed: float) -> Table:
    done = sum(1 for t in tasks if t.state in ("success", "skipped"))
    table = Table(title=f"tally_daily ds={ds}: {run['state']}  {done}/{len(tasks)} tasks  {elapsed:.0f}s",
                  title_justify="left")
    table.add_column("task")
    table.add_column("state")
    table.add_column("seconds", justify="right")
    for t in sorted(tasks, key=lambda t: t.task_id):
        style = STATE_STYLE.get(t.state or "", "dim")
        table.add_row(t.task_id, f"[{style}]{t.state or 'none'}[/{style}]",
                      f"{t.duration:.1f}" if t.duration else "")
    return table


def run_cmd(ds: Annotated[str | None, params.ds_option("Logical date YYYY-MM-DD; default: last seeded day.")]
            = None) -> None:
    """Run tally_daily for one ds through the Airflow scheduler, then print the summary.

    The daily run's own ds (yesterday, UTC) is extracted from the sources. An older ds is rebuilt
    from the raw partitions the lake landed on the day (sources hold only current state, so
    extracting it again would miss every record changed since), or refused when the lake does
    not hold that day (``tally.backfill.plan``, the rule `tally backfill` uses)."""
    profile = common.require_profile()
    ds = ds or profile.default_ds()
    conf = past_day_conf(profile, ds)
    later = [] if conf else later_landed_days(profile, ds)
    run = trigger_and_watch(profile, ds, conf=conf)
    summary(profile, ds)
    if later:
        console.print(f"Later days ({later[0]} … {later[-1]}) were built from this day's previous landing: "
                      f"`tally reconcile` marks them stale (exit 8) if this run landed it again. Replay them in order: "
                      f"tally backfill --start {later[0]} --end {later[-1]} --missing", style="yellow",
                      markup=False, highlight=False)
    raise typer.Exit(0 if run["state"] == "success" else 1)


def past_day_conf(profile: Profile, ds: str) -> dict | None:
    """``{"tally_backfill": True}`` for a ds before the daily run's own (its landed day is reused);
    None for the daily run's ds (extracted); a ds the lake cannot rebuild exactly is refused (exit 2)."""
    from tally.backfill import plan
    from tally.lake import Lake

    today = plan.utc_today()
    if ds >= (today - timedelta(days=1)).isoformat():
        return None
    decision = plan.source_for(ds, plan.landed(Lake(profile.lake)), today)
    if decision.refused:
        raise params.InputError(decision.reason)
    console.print(f"ds={ds} is before the daily run's own day: it is rebuilt from the raw partitions the lake landed "
                  "on that day (sources hold only current state).", style="yellow", markup=False, highlight=False)
    return {"tally_backfill": True}


def later_landed_days(profile: Profile, ds: str) -> list[str]:
    """The ds after ``ds`` that every raw dataset has landed (re-landing ``ds`` makes them stale)."""
    from tally.backfill import plan
    from tally.lake import Lake

    try:
        return [d for d in plan.complete_days(plan.landed(Lake(profile.lake))) if d > ds]
    except OSError:  # a lake this machine cannot list: nothing to say
        return []


def _write_pgpass(conn: PostgresConn) -> Path:
    """``$TALLY_HOME/pgpass`` (owner-only) so analysts can paste a psql command with no password in it."""
    import os

    from tally.core.paths import tally_home

    path = tally_home() / "pgpass"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{conn.host}:{conn.port}:*:{conn.user}:{conn.password}\n")
    return path


def summary(profile: Profile, ds: str) -> None:
    import psycopg

    from tally import ledger
    from tally.cli.reconcile import dag_run_of
    from tally.ledger import validation_log
    from tally.reconcile.report import flow_table, gates_table
    from tally.reconcile.verdict import judge

    wh = profile.warehouse
    with psycopg.connect(wh.conninfo()) as conn:
        flow = ledger.flow(conn, ds)
        gates = validation_log.latest(conn, ds)
        exists = conn.execute("SELECT to_regclass('marts.mart_rep_performance')").fetchone()[0]
        mart_rows = conn.execute(
            "SELECT count(*) FROM marts.mart_rep_performance WHERE ds = %s", (ds,)
        ).fetchone()[0] if exists else 0
    run, known, note = dag_run_of(profile, ds)  # judge each hop by whether its task ran
    judgement = judge(flow, run, ds, airflow_known=known)
    if note:
        console.print(note, style="yellow", markup=False, highlight=False)
    console.print(flow_table(flow, ds, judgement))
    console.print(gates_table(gates))
    console.print(judgement.headline, markup=False, highlight=False)
    console.print(f"\n[bold]mart_rep_performance[/bold]: {mart_rows:,} rows for ds={ds}")
    pgpass = _write_pgpass(wh)
    if profile.airflow:
        print_line(common.airflow_login_line(profile.airflow), markup=False)
    psql = " ".join([f"PGPASSFILE={pgpass}", "psql", "-h", wh.host, "-p", str(wh.port), "-U", wh.user, wh.dbname,
                     "-c", f"'{ANALYST_QUERY}'"])
    console.print("Analysts, paste:")
    print_line(f"  [bold]{escape(psql)}[/bold]")
    console.print("The stack keeps running: [bold]make down[/bold] (or `tally down`) stops it; "
                  "delete .tally/ to reset.")


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
