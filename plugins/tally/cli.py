"""The `tally` command: run the embedded stack, seed it, run the daily job, reconcile."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

app = typer.Typer(help="Tally: every row accounted for, source to mart.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
console = Console()

DAG_ID = "tally_daily"
ANALYST_QUERY = "table marts.mart_rep_performance"
STATE_STYLE = {"success": "green", "failed": "red", "upstream_failed": "red", "running": "yellow",
               "queued": "cyan", "scheduled": "cyan", "up_for_retry": "magenta", "skipped": "dim"}


def _stack():
    from tally.stack.manager import Stack

    return Stack()


def _require_stack():
    stack = _stack()
    if not stack.state:
        console.print("[red]The local stack has never been started.[/red] Run [bold]tally up[/bold] first.")
        raise typer.Exit(1)
    return stack


@app.command()
def up(airflow: Annotated[bool, typer.Option(help="Also start Airflow's four components.")] = True) -> None:
    """Start the embedded stack (idempotent): Postgres, S3, Kafka, the Salesforce simulator, Airflow."""
    stack = _stack()
    with console.status("starting") as status:
        stack.up(progress=lambda what: status.update(f"starting {what}"), with_airflow=airflow)
    _print_status(stack)


@app.command()
def down() -> None:
    """Stop exactly what `tally up` started. Data stays in .tally/ (delete it to reset)."""
    stack = _stack()
    with console.status("stopping") as status:
        stack.down(progress=lambda what: status.update(f"stopping {what}"))
    console.print("stack stopped; state kept in " + str(stack.home))


@app.command()
def status() -> None:
    """Show each service's health and address."""
    stack = _stack()
    if not stack.state:
        console.print("no stack here yet: run [bold]tally up[/bold]")
        raise typer.Exit(1)
    healthy = _print_status(stack)
    raise typer.Exit(0 if healthy else 1)


def _print_status(stack) -> bool:
    table = Table(title=f"Tally local stack ({stack.home})", title_justify="left")
    for col in ("service", "health", "pid", "address", "notes"):
        table.add_column(col)
    all_ok = True
    for s in stack.status():
        all_ok &= s.healthy
        table.add_row(s.name, "[green]healthy[/green]" if s.healthy else "[red]down[/red]", str(s.pid or ""),
                      s.address, s.detail)
    console.print(table)
    return all_ok


@app.command()
def seed(
    seed: int = 7,
    accounts: int = 200,
    opportunities: int = 1000,
    users: int = 12,
    days: int = 30,
    as_of: Annotated[str | None, typer.Option(help="End of the generated history (YYYY-MM-DD, exclusive); default today.")] = None,
) -> None:
    """Fill the Salesforce simulator and the ERP database with deterministic synthetic data."""
    from tally import generator
    from tally.events.generator import EventScale, produce_events
    from tally.seed import seed_erp, seed_salesforce

    stack = _require_stack()
    end = datetime.fromisoformat(as_of).replace(tzinfo=UTC) if as_of else generator.default_as_of()
    scale = generator.Scale(accounts=accounts, opportunities=opportunities, users=users, days=days)
    data = generator.generate(scale, seed=seed, as_of=end)
    seed_salesforce(stack.state["sfsim"]["db"], data)
    seed_erp(stack.postgres("erp"), data)
    events = produce_events(f"127.0.0.1:{stack.state['kafka']['port']}", seed=seed, scale=EventScale(days=days),
                            as_of=end, accounts=data.salesforce["Account"])
    stack.state["seed"] = {"seed": seed, "scale": scale.__dict__, "as_of": end.isoformat()}
    stack._save()
    table = Table(title=f"Seeded (seed={seed}, history to {end.date()})", title_justify="left")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    for name, n in data.counts().items():
        table.add_row(name, f"{n:,}")
    note = " (topic already seeded: nothing sent)" if events["skipped"] else ""
    table.add_row(f"kafka.{events['topic']}", f"{events['sent']:,}{note}")
    console.print(table)


def default_ds(stack) -> str:
    """The last day of seeded history, else yesterday (UTC)."""
    as_of = stack.state.get("seed", {}).get("as_of")
    end = datetime.fromisoformat(as_of) if as_of else datetime.now(UTC)
    return (end.date() - timedelta(days=1)).isoformat()


def airflow_client(stack):
    from tally.airflow_client import AirflowClient
    from tally.stack.airflow import ADMIN_USER

    return AirflowClient(stack.airflow_url, ADMIN_USER, stack.state["airflow"]["admin_password"])


def trigger_and_watch(stack, ds: str, timeout: float = 1800) -> dict:
    """Trigger tally_daily for ds through the scheduler and show live progress; returns the run."""
    from tally.generator import ds_interval

    client = airflow_client(stack)
    with console.status("waiting for the dag-processor to parse tally_daily"):
        client.wait_for_dag(DAG_ID)
    client.unpause(DAG_ID)
    start, end = ds_interval(ds)
    run_id = client.start_run(DAG_ID, start, end, run_id=f"tally__{ds}__{int(time.time())}")
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


@app.command("run")
def run_cmd(ds: Annotated[str | None, typer.Option(help="Logical date YYYY-MM-DD; default: last seeded day.")] = None) -> None:
    """Run tally_daily for one ds through the Airflow scheduler, then print the summary."""
    stack = _require_stack()
    ds = ds or default_ds(stack)
    run = trigger_and_watch(stack, ds)
    summary(stack, ds)
    raise typer.Exit(0 if run["state"] == "success" else 1)


@app.command()
def demo(
    accounts: int = 200, opportunities: int = 1000, users: int = 12, days: int = 30, seed_value: Annotated[int, typer.Option("--seed")] = 7,
) -> None:
    """Start the stack, seed it, run one ds through every stage, and summarise."""
    stack = _stack()
    with console.status("starting the local stack") as status:
        stack.up(progress=lambda what: status.update(f"starting {what}"))
    _print_status(stack)
    seed(seed=seed_value, accounts=accounts, opportunities=opportunities, users=users, days=days, as_of=None)
    stack = _stack()
    ds = default_ds(stack)
    run = trigger_and_watch(stack, ds)
    summary(stack, ds)
    raise typer.Exit(0 if run["state"] == "success" else 1)


def summary(stack, ds: str) -> None:
    import psycopg

    from tally import ledger, validation_log
    from tally.report import divergences, flow_table, gates_table

    wh = stack.postgres("warehouse")
    with psycopg.connect(wh.conninfo()) as conn:
        flow = ledger.flow(conn, ds)
        gates = validation_log.latest(conn, ds)
        exists = conn.execute("SELECT to_regclass('marts.mart_rep_performance')").fetchone()[0]
        mart_rows = conn.execute(
            "SELECT count(*) FROM marts.mart_rep_performance WHERE ds = %s", (ds,)
        ).fetchone()[0] if exists else 0
    console.print(flow_table(flow, ds))
    console.print(gates_table(gates))
    for line in divergences(flow):
        console.print(f"[red]{line}[/red]")
    console.print(f"\n[bold]mart_rep_performance[/bold]: {mart_rows:,} rows for ds={ds}")
    pgpass = stack.write_pgpass()
    console.print(f"Airflow UI: [link={stack.airflow_url}]{stack.airflow_url}[/link]  login: admin, password in "
                  f"{stack.home / 'airflow' / 'passwords.json'}")
    psql = " ".join([f"PGPASSFILE={pgpass}", "psql", "-h", wh.host, "-p", str(wh.port), "-U", wh.user, wh.dbname,
                     "-c", f"'{ANALYST_QUERY}'"])
    console.print(f"Analysts, paste:\n  [bold]{psql}[/bold]")
    console.print("The stack keeps running: [bold]make down[/bold] (or `tally down`) stops it; "
                  "delete .tally/ to reset.")


@app.command()
def reconcile(
    ds: Annotated[str | None, typer.Option(help="Logical date YYYY-MM-DD (required without --full)")] = None,
    full: Annotated[bool, typer.Option("--full", help="Compare every ERP key and version, source vs warehouse, "
                                       "and heal what differs (docs/reconciliation.md).")] = False,
    heal: Annotated[bool, typer.Option(help="With --full: re-extract what differs (--no-heal: only report).")] = True,
    table: Annotated[list[str] | None, typer.Option(help="With --full: only this ERP table (repeatable).")] = None,
) -> None:
    """Print rows at every hop for ds from the ledger, name the first hop that lost rows, and
    show sample keys missing between the lake and the warehouse (and the mart). With --full,
    reconcile the ERP's current rows with the warehouse instead."""
    if full:
        _reconcile_full(table, heal)
        return
    if ds is None:
        console.print("[red]--ds is required (or --full)[/red]")
        raise typer.Exit(2)
    import psycopg

    from tally import ledger
    from tally.reconcile import key_diff
    from tally.report import divergences, flow_table

    stack = _require_stack()
    with psycopg.connect(stack.postgres("warehouse").conninfo()) as conn:
        flow = ledger.flow(conn, ds)
    if not flow:
        console.print(f"no ledger entries for ds={ds}")
        raise typer.Exit(1)
    console.print(flow_table(flow, ds))
    lost = divergences(flow)
    for line in lost:
        console.print(f"[red]{line}[/red]")
    res = stack.resources()
    for dataset in sorted(flow):
        try:
            diff = key_diff(res.lake, res.warehouse, dataset, ds)
        except (KeyError, FileNotFoundError):
            continue
        if diff and (diff.missing_count or diff.extra_count):
            console.print(f"[red]{dataset}: {diff.missing_count} key(s) in {diff.left} missing from {diff.right}"
                          f"{', e.g. ' + ', '.join(diff.missing) if diff.missing else ''}; {diff.extra_count} extra"
                          f"{', e.g. ' + ', '.join(diff.extra) if diff.extra else ''}[/red]")
            lost.append(dataset)
    raise typer.Exit(1 if lost else 0)


def _reconcile_full(tables: list[str] | None, heal: bool) -> None:
    """`tally reconcile --full`: one row per ERP table; exit 1 while differences are left."""
    from tally.reconcile_full import PROBLEMS, Options, erp_datasets, reconcile_table

    res = _require_stack().resources()
    try:
        datasets = erp_datasets(tables)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    out = Table(title="Full reconciliation: ERP source vs warehouse (latest version per key)", title_justify="left")
    for col in ("table", "status", "source rows", "cutoff", *PROBLEMS, "in flight", "quarantined", "healed",
                "left", "seconds"):
        out.add_column(col, justify="left" if col in ("table", "status", "cutoff") else "right")
    left_total = 0
    details = []
    for d in datasets:
        with console.status(f"reconciling {d.dataset_id}") as status:
            r = reconcile_table(res.erp, res.lake, res.warehouse, d, Options(heal=heal),
                                progress=lambda msg, s=status, name=d.dataset_id: s.update(f"{name}: {msg}"))
        left_total += r.problems_left
        style = {"ok": "green", "healed": "yellow", "differences": "red"}.get(r.status, "dim")
        out.add_row(d.dataset_id, f"[{style}]{r.status}[/{style}]", f"{r.source_rows:,}", (r.cutoff or "")[:16],
                    *(str(r.found.get(c, 0)) for c in PROBLEMS), str(r.found.get("in_flight", 0)),
                    str(r.found.get("quarantined", 0)), str(sum(r.healed.values())), str(r.problems_left),
                    f"{r.seconds.get('total', 0):.1f}")
        for category, keys in r.samples.items():
            details.append(f"{d.dataset_id} {category}: {', '.join(map(str, keys))}"
                           + (" …" if r.found[category] > len(keys) else ""))
        details += [f"{d.dataset_id}: {note}" for note in r.notes]
    console.print(out)
    for line in details:
        console.print(f"  {line}", markup=False, highlight=False)
    raise typer.Exit(1 if left_total else 0)


extract_app = typer.Typer(help="Ad-hoc extraction of one dataset for one interval (debugging, backfills).")
app.add_typer(extract_app, name="extract")


def _parse_instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@extract_app.command("salesforce")
def extract_salesforce(
    object_name: Annotated[str, typer.Option("--object", help="Salesforce object, e.g. Opportunity")],
    start: Annotated[str, typer.Option(help="Interval start (ISO date or datetime, UTC)")],
    end: Annotated[str, typer.Option(help="Interval end, exclusive")],
    ds: Annotated[str | None, typer.Option(help="Partition to land as; default: the start date")] = None,
    lake: Annotated[str | None, typer.Option(help="Lake URI; default: the local stack's lake")] = None,
) -> None:
    """Extract one Salesforce object for [start, end) into the lake, with a progress bar.

    Credentials: the local stack's simulator, or TALLY_SF_LOGIN_URL, TALLY_SF_USERNAME,
    TALLY_SF_PASSWORD, TALLY_SF_SECURITY_TOKEN (and optional TALLY_SF_CA_BUNDLE) when set.
    """
    import os

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tally import catalog, pipeline
    from tally.config import SalesforceConn
    from tally.lake import Lake

    dataset_id = f"salesforce.{object_name}"
    try:
        catalog.get(dataset_id)
    except KeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    t0, t1 = _parse_instant(start), _parse_instant(end)
    res = _require_stack().resources()
    if os.environ.get("TALLY_SF_USERNAME"):
        res.salesforce = SalesforceConn(
            os.environ.get("TALLY_SF_LOGIN_URL", "https://login.salesforce.com"), os.environ["TALLY_SF_USERNAME"],
            os.environ.get("TALLY_SF_PASSWORD", ""), os.environ.get("TALLY_SF_SECURITY_TOKEN", ""),
            ca_bundle=os.environ.get("TALLY_SF_CA_BUNDLE"))
    if lake:
        res.lake = Lake(lake)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} records"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"{object_name} [{t0:%Y-%m-%d %H:%M}, {t1:%Y-%m-%d %H:%M})", total=None)
        result = pipeline.extract(res, dataset_id, ds or t0.date().isoformat(), t0, t1,
                                  progress=lambda n: bar.update(task, completed=n))
    table = Table(title=f"Landed {dataset_id}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command("env")
def env_cmd() -> None:
    """Print the path of the env file to `source` for using the airflow CLI against the stack."""
    stack = _require_stack()
    console.print(str(stack.write_env_file()))


def _can_open_browser() -> bool:
    """A browser that will not take over this terminal: a desktop session, or $BROWSER."""
    import os
    import sys

    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("BROWSER"))
            or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))


@app.command("docs")
def docs_cmd(
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in a browser (skipped without a "
                                                                         "display).")] = True,
    failed: Annotated[bool, typer.Option("--failed", help="The newest failed validation's page, not the index.")]
    = False,
    suite: Annotated[str | None, typer.Option(help="The newest validation page of this suite, e.g. "
                                                   "raw.salesforce.Opportunity.")] = None,
) -> None:
    """Great Expectations Data Docs: every gate's validation results, newest first.

    A static site under $TALLY_HOME/data_docs (TALLY_DATA_DOCS_DIR), updated by each gate. Prints
    the page's path and file:// URL (the last line); opens it unless --no-open or headless.
    """
    from tally.quality import docs

    index = docs.index_path()
    if not index.exists():
        console.print(f"No gate has written Data Docs in {index.parent} yet: building the index and the suites' "
                      "pages (imports Great Expectations, ~10 s).")
        docs.build_index()
    target = index
    if failed or suite:
        entries = docs.latest(suite=suite, failed_only=failed)
        if entries:
            target = index.parent / entries[0]["filepath"]
            state = "passed" if entries[0]["validation_success"] else "FAILED"
            console.print(f"{entries[0]['expectation_suite_name']} ds={entries[0]['run_name']} {state} at "
                          f"{entries[0]['run_time']}")
        else:
            console.print("[yellow]No such validation in the index[/yellow]; showing the index.")
    console.print(f"Data Docs: {target}")
    typer.echo(target.as_uri())
    if open_browser:
        import webbrowser

        if not (_can_open_browser() and webbrowser.open(target.as_uri())):
            console.print("[dim]No browser here (no display): open the URL above, or copy the folder.[/dim]")


# -- alerts for on-call (ops.alerts; see docs/runbook.md) -----------------------------------------
alerts_app = typer.Typer(help="On-call alerts recorded in ops.alerts: list (default), show, ack.",
                         invoke_without_command=True)
app.add_typer(alerts_app, name="alerts")
DsnOption = Annotated[str | None, typer.Option(
    "--dsn", envvar="TALLY_WAREHOUSE_DSN", show_default=False,
    help="Warehouse holding ops.alerts (libpq conninfo or URI); default: the local stack's.")]


def _alerts_conn(dsn: str | None):
    import psycopg

    return psycopg.connect(dsn or _require_stack().postgres("warehouse").conninfo())


@alerts_app.callback()
def alerts_main(ctx: typer.Context) -> None:
    """With no sub-command: list the open alerts."""
    if ctx.invoked_subcommand is None:
        import os

        alerts_list(all_=False, ds=None, limit=50, dsn=os.environ.get("TALLY_WAREHOUSE_DSN"))


@alerts_app.command("list")
def alerts_list(
    all_: Annotated[bool, typer.Option("--all", help="Include acknowledged alerts.")] = False,
    ds: Annotated[str | None, typer.Option(help="Only this logical date (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    dsn: DsnOption = None,
) -> None:
    """List open alerts (newest first): what failed, where, and whether each channel got it."""
    from rich.markup import escape

    from tally.alerts import store

    with _alerts_conn(dsn) as conn:
        rows = store.list_alerts(conn, include_acknowledged=all_, ds=ds, limit=limit)
    if not rows:
        console.print("no open alerts" if not all_ else "no alerts")
        return
    table = Table(title="Alerts" if all_ else "Open alerts", title_justify="left")
    for col in ("id", "raised (UTC)", "dag", "ds", "gate / task", "what", "seen", "delivery", "ack"):
        table.add_column(col, justify="right" if col in ("id", "seen") else "left")
    for r in rows:
        ack = f"[green]{escape(r['acknowledged_by'] or '')}[/green]" if r["acknowledged_at"] else "[red]open[/red]"
        table.add_row(str(r["id"]), _utc(r["created_at"]), escape(r["dag_id"]), r["ds"],
                      escape(r["gate"]), escape(_clip(r["summary"], 90)), str(r["occurrences"]),
                      _delivery_cell(r["delivery"]), ack)
    console.print(table)
    console.print("details: [bold]tally alerts show ID[/bold]   acknowledge: [bold]tally alerts ack ID --note ...[/bold]")


@alerts_app.command("show")
def alerts_show(alert_id: Annotated[int, typer.Argument(metavar="ID")], dsn: DsnOption = None) -> None:
    """Print one alert as it was sent, with its delivery status and acknowledgement."""
    from tally.alerts import store
    from tally.alerts.model import Alert

    with _alerts_conn(dsn) as conn:
        row = store.get(conn, alert_id)
    if row is None:
        console.print(f"[red]no alert {alert_id}[/red]")
        raise typer.Exit(1)
    fields = set(Alert.__dataclass_fields__)
    alert = Alert(**{k: v for k, v in row["payload"].items() if k in fields})
    console.print(alert.text(), markup=False, highlight=False)
    for channel, d in row["delivery"].items():
        console.print(f"{channel}: {d.get('status')} {d.get('error') or d.get('detail') or ''} {d.get('at', '')}",
                      markup=False, highlight=False)
    console.print(f"seen {row['occurrences']} time(s), last {_utc(row['last_seen_at'])} UTC")
    if row["acknowledged_at"]:
        console.print(f"acknowledged by {row['acknowledged_by']} at {_utc(row['acknowledged_at'])} UTC"
                      + (f": {row['note']}" if row["note"] else ""), markup=False, highlight=False)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(metavar="ID")],
    by: Annotated[str | None, typer.Option(help="Who handles it; default: your user name.")] = None,
    note: Annotated[str | None, typer.Option(help="What you found or did.")] = None,
    dsn: DsnOption = None,
) -> None:
    """Acknowledge an alert: it leaves the open list; who and the note are kept."""
    import getpass

    from tally.alerts import store

    by = by or getpass.getuser()
    with _alerts_conn(dsn) as conn:
        status, row = store.acknowledge(conn, alert_id, by, note)
    if status == "missing":
        console.print(f"[red]no alert {alert_id}[/red]")
        raise typer.Exit(1)
    if status == "already":
        console.print(f"alert {alert_id} was already acknowledged by {row['acknowledged_by']} at "
                      f"{_utc(row['acknowledged_at'])} UTC (kept)", markup=False)
        return
    console.print(f"acknowledged alert {alert_id} ({row['gate']}, ds={row['ds']}) as {by}", markup=False)


def _delivery_cell(delivery: dict) -> str:
    if not delivery:
        return "[dim]ops.alerts only[/dim]"
    marks = {"sent": "[green]sent[/green]", "failed": "[red]FAILED[/red]", "pending": "[yellow]pending[/yellow]"}
    return "\n".join(f"{c} {marks.get(d.get('status'), d.get('status'))}" for c, d in delivery.items())


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _clip(text: str, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    app()
