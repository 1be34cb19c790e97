"""The local rig's commands: ``tally up | down | status | seed | demo | env``.

They join the product's ``tally`` command through the ``tally.commands`` entry point group
(``local = "tally_local.cli:register"`` in pyproject.toml): ``tally.cli`` calls :func:`register`
with its Typer app when this package is installed (the ``local`` extra). The product's helpers
(``tally.cli.common``, ``tally.cli.run``) are imported inside the commands, so loading this module
never imports ``tally.cli`` back while it is still being set up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from tally_local.stack.manager import Stack


def _require_stack() -> Stack:
    from tally.cli.common import console

    stack = Stack()
    if not stack.state:
        console.print("[red]The local stack has never been started.[/red] Run [bold]tally up[/bold] first.")
        raise typer.Exit(1)
    return stack


def up(airflow: Annotated[bool, typer.Option(help="Also start Airflow's four components.")] = True) -> None:
    """Start the embedded stack (idempotent): Postgres, S3, Kafka, the Salesforce simulator, Airflow."""
    from tally.cli.common import console

    stack = Stack()
    with console.status("starting") as status:
        stack.up(progress=lambda what: status.update(f"starting {what}"), with_airflow=airflow)
    _print_status(stack)


def down() -> None:
    """Stop exactly what `tally up` started. Data stays in .tally/ (delete it to reset)."""
    from tally.cli.common import console

    stack = Stack()
    with console.status("stopping") as status:
        stack.down(progress=lambda what: status.update(f"stopping {what}"))
    console.print("stack stopped; state kept in " + str(stack.home))


def status() -> None:
    """Show each service's health and address."""
    from tally.cli.common import console

    stack = Stack()
    if not stack.state:
        console.print("no stack here yet: run [bold]tally up[/bold]")
        raise typer.Exit(1)
    healthy = _print_status(stack)
    raise typer.Exit(0 if healthy else 1)


def _print_status(stack: Stack) -> bool:
    from tally.cli.common import console

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


def seed(
    seed: int = 7,
    accounts: int = 200,
    opportunities: int = 1000,
    users: int = 12,
    days: int = 30,
    as_of: Annotated[str | None, typer.Option(help="End of the generated history (YYYY-MM-DD, exclusive); default today.")] = None,
) -> None:
    """Fill the Salesforce simulator and the ERP database with deterministic synthetic data."""
    from tally.cli.common import console
    from tally_local import generator
    from tally_local.events_generator import EventScale, produce_events
    from tally_local.seed import seed_erp, seed_salesforce

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


def demo(
    accounts: int = 200, opportunities: int = 1000, users: int = 12, days: int = 30, seed_value: Annotated[int, typer.Option("--seed")] = 7,
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
    from tally.cli.common import console

    console.print(str(_require_stack().write_env_file()))


def register(app: typer.Typer) -> None:
    """Add the local rig's commands to the product's ``tally`` app (the ``tally.commands`` entry point)."""
    for command in (up, down, status, seed):
        app.command()(command)
    app.command("demo")(demo)
    app.command("env")(env)
