"""`tally backfill`: rebuild a range of ds exactly, through Airflow 3's backfill API (docs/backfill.md).

Order of operations, so that a refusal costs nothing: the range is planned against the lake alone
(``tally.backfill.plan``: every ds from its landed raw partitions, or extracted when that is
exact, else refused) and any refusal exits 2 before Airflow or the warehouse is asked. Then:
attach to a backfill of tally_daily that is still active (an interrupted `tally backfill`), or
capture the marts' money totals and create one backfill per contiguous run of ds, one after
another; watch each live; print the per-ds summary (``tally.backfill.report``).
"""

from __future__ import annotations

import json
import time
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tally.backfill import plan, progress
from tally.cli import common, params
from tally.cli.common import console

if TYPE_CHECKING:
    import psycopg

    from tally.backfill import report
    from tally.cli.airflow_api import AirflowClient
    from tally.core.profile import Profile

DAG_ID = "tally_daily"
CONF = {"tally_backfill": True}  # tally_daily then reuses the landed raw partitions (tally.airflow.tasks.extract)
INTERRUPTED_EXIT = 130
POLL_SECONDS = 2.0


class Reprocess(StrEnum):
    """Airflow's reprocess behaviour: which ds that already have a finished run are run again."""

    none = "none"
    failed = "failed"
    completed = "completed"


def backfill_cmd(
    start: Annotated[str, params.ds_option("First ds of the range (YYYY-MM-DD).", "--start")],
    end: Annotated[str, params.ds_option("Last ds of the range, included (YYYY-MM-DD).", "--end")],
    reprocess: Annotated[Reprocess | None, typer.Option(
        help="Airflow's reprocess behaviour for ds that already have a finished run: none skips them; "
             "failed re-runs those whose run failed; completed re-runs every ds. Default: failed (a ds with a "
             "successful run is skipped, a failed or cancelled one runs again), with --missing completed (every "
             "ds it picks does not reconcile, whatever its run's state).", show_default=False)] = None,
    missing: Annotated[bool, typer.Option("--missing", help="Only the ds that do not reconcile yet (tally "
                                          "reconcile --ds would not exit 0); each contiguous run of them is "
                                          "one backfill, one after another.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (source, existing run, run or skip, "
                                          "as Airflow's dry run says) and create nothing.")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel tally_daily's active backfill (its running "
                                         "ds finishes, the queued ones fail) and exit.")] = False,
) -> None:
    """Rebuild the ds from --start to --end through Airflow's backfill (in ds order, one at a time,
    visible and cancellable in the UI), each from the lake's landed raw partitions, or extracted
    only when that is exact (the daily run's own ds); any other ds is refused, saying why, before
    anything is created. Re-running the same command attaches to a backfill still running.
    Exit 0 every ds reconciled, 1 rows lost, 2 usage or refused ds, 3 a ds stopped at a failed
    task, 4 a ds has no run, 5 in progress, 6 cannot reach Airflow or the warehouse, 7 staged not
    published, 130 interrupted (the backfill keeps running)."""
    if start > end:
        raise params.InputError(f"--start ({start}) must not be after --end ({end})")
    behaviour = (reprocess or (Reprocess.completed if missing else Reprocess.failed)).value
    profile = common.require_profile()
    today = plan.utc_today()
    wanted = plan.days(start, end)
    landed = _landed(profile)
    if not missing and not cancel:
        _refuse(plan.plan_range(wanted, landed, today))  # before Airflow or the warehouse is asked
    try:
        _plan_and_run(profile, start, end, wanted, landed, today, reprocess, behaviour, missing, dry_run, cancel)
    except typer.Exit:
        raise
    except Exception as exc:
        import requests

        # Airflow answered with an error (ApiError, a failed login, DAG import errors: RuntimeError; a
        # refused GET: HTTPError) or never parsed the DAG: one line. Unreachable: the handler's exit 6.
        if not isinstance(exc, RuntimeError | requests.HTTPError | TimeoutError):
            raise
        typer.echo(f"error: {' '.join(str(exc).split())[:600]}", err=True)
        raise typer.Exit(1) from None


def _plan_and_run(profile: Profile, start: str, end: str, wanted: list[str], landed: dict[str, set[str]], today: date,
                  reprocess: Reprocess | None, behaviour: str, missing: bool, dry_run: bool, cancel: bool) -> None:
    """Everything after the lake's plan: Airflow (and the warehouse for --missing and the summary)."""
    from tally.cli.run import airflow_client

    client = airflow_client(profile)
    if cancel:
        _cancel(client)
        return
    with console.status(f"waiting for the dag-processor to parse {DAG_ID}"):
        client.wait_for_dag(DAG_ID)
    runs = _latest_runs(client, wanted)
    if missing:
        wanted = _not_reconciled(profile, client, wanted, runs)
        if not wanted:
            console.print(f"Every ds from {start} to {end} reconciles: nothing to backfill.", style="green")
            raise typer.Exit(0)
        _refuse(plan.plan_range(wanted, landed, today))
    sources = {d.ds: d.source for d in plan.plan_range(wanted, landed, today)}
    groups = plan.contiguous(wanted) if missing else [(start, end)]
    if dry_run:
        _print_plan(client, groups, sources, runs, behaviour)
        raise typer.Exit(0)
    again = (f"tally backfill --start {start} --end {end}" + (f" --reprocess {reprocess.value}" if reprocess else "")
             + (" --missing" if missing else ""))
    _execute(profile, client, groups, sources, behaviour, again)


def _landed(profile: Profile) -> dict[str, set[str]]:
    from tally.lake import Lake

    return plan.landed(Lake(profile.lake))


def _refuse(decisions: list[plan.Decision]) -> None:
    refused = plan.refusals(decisions)
    if refused:
        for d in refused:
            typer.echo(f"refused: {d.reason}", err=True)
        typer.echo(f"error: {len(refused)} of {len(decisions)} ds cannot be built exactly; nothing was created "
                   f"(docs/backfill.md)", err=True)
        raise typer.Exit(params.USAGE_EXIT)


def _interval(ds: str):
    from tally.core.dates import ds_interval

    return ds_interval(ds)[0]


def _latest_runs(client: AirflowClient, ds_values: list[str]) -> dict[str, dict]:
    """{ds: its newest tally_daily run} over the range (every run type)."""
    if not ds_values:
        return {}
    out: dict[str, dict] = {}
    for run in client.runs_between(DAG_ID, _interval(min(ds_values)), _interval(max(ds_values))):
        ds = progress.ds_of(run)
        key = (run.get("queued_at") or "", run.get("start_date") or "")
        if ds not in out or key >= (out[ds].get("queued_at") or "", out[ds].get("start_date") or ""):
            out[ds] = run
    return out


def _dag_run(client: AirflowClient, run: dict | None):
    from tally.reconcile.verdict import DagRun

    if run is None:
        return None
    tasks = client.tasks(DAG_ID, run["dag_run_id"])
    return DagRun(run["dag_run_id"], run.get("state"), {t.task_id: t.state for t in tasks})


def _judge(profile: Profile, conn: psycopg.Connection, client: AirflowClient, ds: str, run: dict | None):
    """(the ledger's flow for ds, the verdict `tally reconcile --ds` would give)."""
    from tally.cli.reconcile import judged

    return judged(profile, conn, ds, _dag_run(client, run))


def _not_reconciled(profile: Profile, client: AirflowClient, ds_values: list[str], runs: dict[str, dict]) -> list[str]:
    """The ds whose verdict is not ok (a ds needs a successful run to be ok: others are not asked)."""
    import psycopg

    from tally.reconcile.verdict import Code

    out = []
    with psycopg.connect(profile.warehouse.conninfo()) as conn, console.status("reconciling the range"):
        for ds in ds_values:
            run = runs.get(ds)
            if run is None or run.get("state") != "success" or _judge(profile, conn, client, ds, run)[1].code is not Code.OK:
                out.append(ds)
    return out


def _print_plan(client: AirflowClient, groups: list[tuple[str, str]], sources: dict[str, str | None],
                runs: dict[str, dict], reprocess: str) -> None:
    active = client.active_backfill(DAG_ID)
    table = Table(title=f"tally backfill --dry-run (reprocess {reprocess}): nothing is created", title_justify="left")
    for col in ("ds", "source", "existing run", "would"):
        table.add_column(col)
    count = 0
    for first, last in groups:
        would = {str(d)[:10] for d in client.backfill_dry_run(DAG_ID, _interval(first), _interval(last),
                                                              reprocess=reprocess, conf=CONF)}
        for ds in plan.days(first, last):
            run = runs.get(ds)
            existing = f"{run.get('state')} ({run.get('run_type')})" if run else "·"
            skip = (f"[dim]skip: it has a {run.get('state')} run (--reprocess {reprocess})[/dim]" if run
                    else "[dim]skip (Airflow would not create it)[/dim]")
            table.add_row(ds, sources.get(ds) or "·", existing, "[green]run[/green]" if ds in would else skip)
            count += ds in would
    console.print(table)
    console.print(f"{count} ds would run in {len(groups)} backfill(s), in ds order, one at a time.")
    if active:
        console.print(f"[yellow]Backfill #{active['id']} ({str(active['from_date'])[:10]} … "
                      f"{str(active['to_date'])[:10]}) is still active:[/yellow] tally backfill would attach to it "
                      "first.")


def _cancel(client: AirflowClient) -> None:
    active = client.active_backfill(DAG_ID)
    if active is None:
        console.print(f"{DAG_ID} has no active backfill.")
        return
    client.cancel_backfill(active["id"])
    console.print(f"Cancelled backfill #{active['id']}: its queued ds failed, a running ds finishes.")


# -- run ----------------------------------------------------------------------------------------
def _state_file(backfill_id: int):
    from tally.core.paths import tally_home

    return tally_home() / "backfills" / f"{DAG_ID}-{int(backfill_id)}.json"


def _save(backfill_id: int, before: dict[str, report.Money], sources: dict[str, str | None]) -> None:
    """The money totals before the backfill, for a `tally backfill` that attaches to it later."""
    path = _state_file(backfill_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"before": before, "sources": sources}, default=str))


def _load(backfill_id: int) -> tuple[dict[str, report.Money], dict[str, str | None]]:
    from decimal import Decimal

    path = _state_file(backfill_id)
    if not path.exists():
        return {}, {}
    data = json.loads(path.read_text())
    before = {ds: {m: ({c: Decimal(v) for c, v in t.items()} if t is not None else None) for m, t in marts.items()}
              for ds, marts in data.get("before", {}).items()}
    return before, data.get("sources", {})


def _execute(profile: Profile, client: AirflowClient, groups: list[tuple[str, str]],
             sources: dict[str, str | None], reprocess: str, again: str) -> None:
    import psycopg

    from tally.backfill import report

    client.unpause(DAG_ID)
    before: dict[str, report.Money] = {}
    ours: dict[str, dict] = {}  # {ds: run} of the backfills this command watched
    current: dict | None = None
    try:
        current = client.active_backfill(DAG_ID)
        if current is not None:
            saved, saved_sources = _load(current["id"])
            before |= saved
            sources = {**saved_sources, **sources}
            console.print(f"[yellow]Attaching to backfill #{current['id']}[/yellow] ({str(current['from_date'])[:10]} "
                          f"… {str(current['to_date'])[:10]}, created {str(current['created_at'])[:19]}): it is "
                          "still active, so it is watched instead of a new one being created.")
            ours |= _watch(client, current)
            done = set(plan.days(str(current["from_date"])[:10], str(current["to_date"])[:10]))
            groups = plan.contiguous(ds for first, last in groups for ds in plan.days(first, last) if ds not in done)
        with psycopg.connect(profile.warehouse.conninfo()) as conn:
            before |= {ds: report.read_money(conn, ds) for first, last in groups for ds in plan.days(first, last)}
        for first, last in groups:
            _wait_in_flight(client, first, last)
            would = client.backfill_dry_run(DAG_ID, _interval(first), _interval(last), reprocess=reprocess, conf=CONF)
            if not would:
                console.print(f"{first} … {last}: every ds already has a run (reprocess {reprocess}): skipped.")
                continue
            current = client.create_backfill(DAG_ID, _interval(first), _interval(last), reprocess=reprocess,
                                              conf=CONF, max_active_runs=1, run_backwards=False)
            _save(current["id"], {ds: before.get(ds, {}) for ds in plan.days(first, last)}, sources)
            console.print(f"Created backfill #{current['id']}: {DAG_ID} {first} … {last}, {len(would)} ds to run "
                          f"(reprocess {reprocess}).")
            ours |= _watch(client, current)
            current = None
    except KeyboardInterrupt:
        _interrupted(profile, current, again)
    _finish(profile, client, sorted({*sources, *ours}), sources, ours, before)


def _wait_in_flight(client: AirflowClient, first: str, last: str) -> None:
    """Wait for runs of the range still queued or running (a cancelled backfill's running ds, the
    daily run): Airflow would skip their ds, and the backfill's ds must not run beside them out of
    ds order (the curated zone of a ds builds on the previous ds's)."""
    with console.status("") as status:
        while True:
            busy = {ds: r["state"] for ds, r in _latest_runs(client, plan.days(first, last)).items()
                    if r.get("state") not in progress.TERMINAL}
            if not busy:
                return
            status.update("waiting for the runs in flight to finish first: "
                          + ", ".join(f"ds={ds} {state}" for ds, state in sorted(busy.items())))
            time.sleep(POLL_SECONDS)


def _watch(client: AirflowClient, backfill: dict) -> dict[str, dict]:
    """Poll the backfill and its runs every ~2 s until every run finished (or it completed)."""
    began = progress.when(backfill["created_at"])
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            backfill = client.backfill(backfill["id"])
            runs = progress.backfill_runs(client.runs_between(DAG_ID, progress.when(backfill["from_date"]),
                                                              progress.when(backfill["to_date"]),
                                                              run_type="backfill"), backfill)
            elapsed = time.time() - began.timestamp() if began else 0.0
            snap = progress.snapshot(runs, elapsed)
            now = [t.task_id for ds in snap.running for t in client.tasks(DAG_ID, runs[ds]["dag_run_id"])
                   if t.state == "running"]
            live.update(progress.render(backfill, snap, runs, now))
            if backfill.get("completed_at") or (runs and snap.finished):
                break
            time.sleep(POLL_SECONDS)
    if not console.is_terminal:  # a log or a pipe gets the last frame only, without its line end
        console.line()
    return dict(runs)


def _interrupted(profile: Profile, backfill: dict | None, again: str) -> None:
    if backfill is None:
        console.print("Interrupted before a backfill was created: nothing runs.")
        raise typer.Exit(INTERRUPTED_EXIT)
    ui = f"{profile.airflow.url.rstrip('/')}/dags/{DAG_ID}" if profile.airflow else "Airflow's UI"
    console.print(f"\n[yellow]Interrupted: backfill #{backfill['id']} keeps running in Airflow[/yellow] (the scheduler "
                  f"runs it; see {ui}, Backfills).")
    console.print(f"  Watch it again: [bold]{escape(again)}[/bold] (the same command attaches to it)")
    console.print(f"  Cancel it: [bold]{escape(again)} --cancel[/bold], or Cancel in the UI, or "
                  f"PUT /api/v2/backfills/{backfill['id']}/cancel")
    raise typer.Exit(INTERRUPTED_EXIT)


def _finish(profile: Profile, client: AirflowClient, ds_values: list[str], sources: dict[str, str | None],
            ours: dict[str, dict], before: dict[str, report.Money]) -> None:
    import psycopg

    from tally.backfill import report

    latest = _latest_runs(client, ds_values)
    results = []
    with psycopg.connect(profile.warehouse.conninfo()) as conn:
        for ds in ds_values:
            run = ours.get(ds) or latest.get(ds)
            flow, judgement = _judge(profile, conn, client, ds, run)
            results.append(report.DsResult(
                ds=ds, source=sources.get(ds), status=report.status_of(run, ds in ours), rows=report.hop_rows(flow),
                judgement=judgement, before=before.get(ds, {}), after=report.read_money(conn, ds),
                seconds=progress.seconds_of(run) if run and ds in ours else None))
    console.print(report.summary_table(results))
    code = report.exit_code(results)
    reconciled = sum(r.judgement.code == 0 for r in results)
    console.print(f"{reconciled}/{len(results)} ds reconciled (exit {code}); details: tally reconcile --ds DS",
                  style="green" if code == 0 else "red")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill_cmd)


__all__ = ["backfill_cmd", "register"]
