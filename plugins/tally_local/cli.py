"""The local rig's commands: ``tally up | down | status | seed | demo | env``.

They join the product's ``tally`` command through the ``tally.commands`` entry point group
(``local = "tally_local.cli:register"`` in pyproject.toml): ``tally.cli`` calls :func:`register`
with its Typer app when this package is installed (the ``local`` extra). The product's helpers
(``tally.cli.common``, ``tally.cli.run``, ``tally.cli.output``) are imported inside the commands and
option callbacks, so loading this module never imports ``tally.cli`` back while it is still being set
up. Input is checked by those callbacks (dates through ``tally.core.dates``) before a command
touches the stack; ``tally.cli``'s handler prints a mistake as one line, exit 2.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from tally.core.dates import parse_ds
from tally.core.profile import profile_path
from tally_local.stack.manager import Stack


def _require_stack() -> Stack:
    from tally.cli.common import console

    stack = Stack()
    if not stack.state:
        console.print("[red]The local stack has never been started.[/red] Run [bold]tally up[/bold] first.")
        raise typer.Exit(1)
    return stack


def up(airflow: Annotated[bool, typer.Option(help="Also start Airflow: its four components and their log server.")] = True) -> None:
    """Start the embedded stack (idempotent): Postgres, S3, Kafka, the Salesforce simulator, Airflow."""
    from tally.cli.common import console

    stack = Stack()
    with console.status("starting") as status:
        stack.up(progress=lambda what: status.update(f"starting {what}"), with_airflow=airflow)
    _print_status(stack)


def down() -> None:
    """Stop exactly what `tally up` started. Data stays in .tally/ (delete it to reset)."""
    from tally.cli.common import console
    from tally.cli.output import print_line

    stack = Stack()
    with console.status("stopping") as status:
        stack.down(progress=lambda what: status.update(f"stopping {what}"))
    print_line(f"stack stopped; state kept in {stack.home}", markup=False)


def _format(ctx: typer.Context, value: str) -> str:
    """``--format``'s callback (``tally.cli.output`` is imported late: see the module's docstring)."""
    from tally.cli.output import parse_format

    return value if ctx.resilient_parsing else parse_format(value).value


def _as_of(ctx: typer.Context, value: str | None) -> str | None:
    return value if value is None or ctx.resilient_parsing else parse_ds(value, "--as-of")


def status(fmt: Annotated[str, typer.Option(
        "--format", callback=_format, metavar="table|json|tsv",
        help="table: for people; json: one JSON document; tsv: a header line and one line per service.")]
        = "table") -> None:
    """Show each service's health and address, the Airflow UI's URL and where its login is."""
    from tally.cli.output import Format, emit

    stack = Stack()
    if not stack.state:
        typer.echo("no stack here yet: run `tally up`", err=fmt != Format.table)
        raise typer.Exit(1)
    services = stack.status()
    healthy = all(s.healthy for s in services)
    records = [{"service": s.name, "healthy": s.healthy, "pid": s.pid, "address": s.address,
                "notes": s.detail} for s in services]
    document = {"home": str(stack.home), "healthy": healthy, "services": records,
                "airflow": _airflow_login(stack), "profile": str(profile_path(stack.home))}
    emit(Format(fmt), records=records, fields=list(records[0]) if records else ["service"], document=document,
         table=lambda: _print_status(stack, services))
    raise typer.Exit(0 if healthy else 1)


def _airflow_login(stack: Stack) -> dict | None:
    """Where the Airflow UI is and how to log in: the user and the file holding the password
    (never the password itself)."""
    from tally.cli.common import airflow_login

    af = stack.profile().airflow if "port" in stack.state.get("airflow", {}) else None
    return None if af is None else airflow_login(af)


def _print_status(stack: Stack, services: list | None = None) -> bool:
    from tally.cli.common import airflow_login_line
    from tally.cli.output import Col, console, new_table, print_line

    print_line(f"Tally local stack in {stack.home}", markup=False)  # a path: never folded into a title
    table = new_table(None, [Col("service"), Col("health"), Col("pid", kind="number"),
                             Col("address", kind="url"), Col("notes")])
    all_ok = True
    for s in stack.status() if services is None else services:
        all_ok &= s.healthy
        table.add_row(s.name, "[green]healthy[/green]" if s.healthy else "[red]down[/red]", str(s.pid or ""),
                      s.address, s.detail)
    console.print(table)
    if "port" in stack.state.get("airflow", {}):
        print_line(airflow_login_line(stack.profile().airflow), markup=False)
    return all_ok


Count = Annotated[int, typer.Option(min=1)]


def seed(
    seed: Annotated[int, typer.Option(min=0, help="Random seed: the same seed gives the same data.")] = 7,
    accounts: Count = 200,
    opportunities: Count = 1000,
    users: Count = 12,
    days: Count = 30,
    as_of: Annotated[str | None, typer.Option(
        callback=_as_of, metavar="YYYY-MM-DD",
        help="End of the generated history (YYYY-MM-DD, exclusive); default today.")] = None,
) -> None:
    """Fill the Salesforce simulator and the ERP database with deterministic synthetic data."""
    from tally.cli.common import console
    from tally_local import generator
    from tally_local.events_generator import EventScale, produce_events
    from tally_local.seed import seed_erp, seed_salesforce

    stack = _require_stack()
    end = (datetime.fromisoformat(parse_ds(as_of, "--as-of")).replace(tzinfo=UTC) if as_of
           else generator.default_as_of())
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


def land_days(
    count: Annotated[int, typer.Option("--count", min=1, max=60, help="How many days to live and land.")] = 5,
) -> None:
    """Live days of change after the seeded history and land each one, as the daily run would have.

    Day by day from the seeded history's last day (`tally seed --as-of` a past date first): the
    Salesforce simulator and the ERP change as that day would change them (``tally_local.evolve``:
    stage moves, new and deleted opportunities, account edits, ERP orders changed, created and
    deleted), then every raw dataset of that day is landed in the lake (no Airflow). Afterwards
    `tally backfill --start FIRST --end LAST` rebuilds those days exactly, and the sources hold the
    last day's state. Run again to live the next days."""
    from datetime import date as date_cls
    from datetime import timedelta

    from tally.cli.common import console
    from tally_local import generator
    from tally_local.evolve import land_day, world_on

    stack = _require_stack()
    seeded = stack.state.get("seed")
    if not seeded:
        raise typer.BadParameter("seed the stack first: tally seed --as-of <a past date>")
    as_of = datetime.fromisoformat(seeded["as_of"]).astimezone(UTC)
    first = as_of.date() - timedelta(days=1)  # the seeded history's last day: landed whole first
    landed = seeded.get("landed_through")
    start = first if landed is None else date_cls.fromisoformat(landed) + timedelta(days=1)
    new = [(start + timedelta(days=k)).isoformat() for k in range(count)]
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    if new[-1] > yesterday.isoformat():
        raise typer.BadParameter(f"day {new[-1]} has not ended yet (the last one that has is {yesterday}): seed an "
                                 f"earlier history first, e.g. tally seed --as-of {yesterday - timedelta(days=count)}")
    base = generator.generate(generator.Scale(**seeded["scale"]), seed=int(seeded["seed"]), as_of=as_of)
    lived = [(first + timedelta(days=k)).isoformat() for k in range(1, (start - first).days)]
    data = world_on(base, lived)  # the sources as the last landed day left them
    res = stack.resources()
    for ds in new:
        with console.status(f"living and landing {ds}"):
            if ds != first.isoformat():
                data = world_on(data, [ds])
            land_day(res, stack.state["sfsim"]["db"], stack.postgres("erp"), data, ds)
        live = sum(1 for o in data.salesforce["Opportunity"] if not o["IsDeleted"])
        console.print(f"landed {ds}: {live:,} live opportunities")
    stack.state["seed"]["landed_through"] = new[-1]
    stack._save()
    console.print(f"Rebuild them through Airflow: tally backfill --start {new[0]} --end {new[-1]}")


def demo(
    accounts: Count = 200, opportunities: Count = 1000, users: Count = 12, days: Count = 30,
    seed_value: Annotated[int, typer.Option("--seed", min=0, help="Random seed of the generated data.")] = 7,
) -> None:
    """Start the stack, seed it, run one ds through every stage, and summarise."""
    from tally.cli.common import console, require_profile
    from tally.cli.run import summary, trigger_and_watch

    stack = Stack()
    with console.status("starting the local stack") as status:
        stack.up(progress=lambda what: status.update(f"starting {what}"))
    _print_status(stack)
    seed(seed=seed_value, accounts=accounts, opportunities=opportunities, users=users, days=days, as_of=None)
    profile = require_profile()
    ds = profile.default_ds()
    run = trigger_and_watch(profile, ds)
    summary(profile, ds)
    raise typer.Exit(0 if run["state"] == "success" else 1)


def env() -> None:
    """Print the path of the env file to `source` for using the airflow CLI against the stack."""
    typer.echo(str(_require_stack().write_env_file()))


def register(app: typer.Typer) -> None:
    """Add the local rig's commands to the product's ``tally`` app (the ``tally.commands`` entry point)."""
    for command in (up, down, status, seed):
        app.command()(command)
    app.command("land-days")(land_days)
    app.command("demo")(demo)
    app.command("env")(env)
