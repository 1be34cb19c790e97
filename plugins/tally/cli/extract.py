"""`tally extract`: land one dataset for one interval, outside the DAG (debugging, backfills)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from tally.cli import common
from tally.cli.common import console

extract_app = typer.Typer(help="Ad-hoc extraction of one dataset for one interval (debugging, backfills).")


def _parse_instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@extract_app.command("salesforce")
def extract_salesforce(
    object_name: Annotated[str, typer.Option("--object", help="Salesforce object, e.g. Opportunity")],
    start: Annotated[str, typer.Option(help="Interval start (ISO date or datetime, UTC)")],
    end: Annotated[str, typer.Option(help="Interval end, exclusive")],
    ds: Annotated[str | None, typer.Option(help="Partition to land as; default: the start date")] = None,
    lake: Annotated[str | None, typer.Option(help="Lake URI; default: the profile's lake")] = None,
) -> None:
    """Extract one Salesforce object for [start, end) into the lake, with a progress bar.

    Credentials: the profile's Salesforce, or TALLY_SF_LOGIN_URL, TALLY_SF_USERNAME,
    TALLY_SF_PASSWORD, TALLY_SF_SECURITY_TOKEN (and optional TALLY_SF_CA_BUNDLE) when set.
    """
    import os

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tally import catalog
    from tally.core.config import SalesforceConn
    from tally.lake import Lake
    from tally.stages.extract import extract

    dataset_id = f"salesforce.{object_name}"
    try:
        catalog.get(dataset_id)
    except KeyError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    t0, t1 = _parse_instant(start), _parse_instant(end)
    res = common.require_profile().resources()
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
        result = extract(res, dataset_id, ds or t0.date().isoformat(), t0, t1,
                         progress=lambda n: bar.update(task, completed=n))
    table = Table(title=f"Landed {dataset_id}", title_justify="left")
    table.add_column("field")
    table.add_column("value")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(extract_app, name="extract")
