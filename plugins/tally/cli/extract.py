"""`tally extract`: land one dataset for one interval, outside the DAG (debugging, backfills)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tally.cli import common, params
from tally.cli.common import console
from tally.core.dates import InputError, parse_instant

if TYPE_CHECKING:
    from tally.lake import Lake

extract_app = typer.Typer(help="Ad-hoc extraction of one dataset for one interval (debugging, backfills).")


@extract_app.command("salesforce")
def extract_salesforce(
    object_name: params.SalesforceObjectOption,
    start: Annotated[str, params.instant_option("Interval start (ISO 8601 date or datetime, UTC)")],
    end: Annotated[str, params.instant_option("Interval end, exclusive (ISO 8601, UTC)")],
    ds: Annotated[str | None, params.ds_option("Partition to land as (YYYY-MM-DD); default: the start date")]
    = None,
    lake: Annotated[str | None, params.lake_option(
        "Lake to land in (a directory or s3://bucket/prefix); default: a new scratch lake under "
        "$TALLY_HOME/scratch/, or the profile's lake with --replace")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Land in the lake itself as the DAG does: replace the ds's committed partition "
        "and record the ledger's source and raw hops (the warehouse gate then fails until load_warehouse "
        "is re-run for the ds)")] = False,
) -> None:
    """Extract one Salesforce object for [start, end), with a progress bar; prints where it landed.

    By default it lands in a new scratch lake ($TALLY_HOME/scratch/<UTC timestamp>/), seeded with the
    manifest of the last ds committed before it so the extract is incremental as the DAG's would be,
    and prints its counts beside the committed partition's: the lake and the ledger are untouched.
    --replace overwrites the committed partition; a --lake that already holds the ds needs it too.

    Credentials: the profile's Salesforce, or TALLY_SF_LOGIN_URL, TALLY_SF_USERNAME,
    TALLY_SF_PASSWORD, TALLY_SF_SECURITY_TOKEN (and optional TALLY_SF_CA_BUNDLE) when set.
    """
    import os

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tally import catalog
    from tally.core.config import SalesforceConn
    from tally.lake import Lake
    from tally.stages.extract import extract

    dataset_id = f"salesforce.{object_name}"  # checked by --object's callback
    t0, t1 = parse_instant(start, "--start"), parse_instant(end, "--end")
    if t1 <= t0:
        raise InputError(f"--end must be after --start, got [{start}, {end})")
    res = common.require_profile().resources()
    if os.environ.get("TALLY_SF_USERNAME"):
        res.salesforce = SalesforceConn(
            os.environ.get("TALLY_SF_LOGIN_URL", "https://login.salesforce.com"), os.environ["TALLY_SF_USERNAME"],
            os.environ.get("TALLY_SF_PASSWORD", ""), os.environ.get("TALLY_SF_SECURITY_TOKEN", ""),
            ca_bundle=os.environ.get("TALLY_SF_CA_BUNDLE"))
    dataset = catalog.get(dataset_id)
    partition_ds = ds or t0.date().isoformat()
    lake_named = Lake(lake) if lake else res.lake
    committed = lake_named.read_manifest(dataset.lake_path, partition_ds)
    if replace:
        target, scratch = lake_named, False
    elif lake:
        if committed is not None:
            raise InputError(f"{dataset.lake_path} ds={partition_ds} is already committed in {lake}: add --replace "
                             "to overwrite it, or leave out --lake to land in a scratch lake")
        target, scratch = lake_named, False
    else:
        target, scratch = Lake(new_scratch_dir()), True
        seed_baseline(lake_named, target, dataset.lake_path, partition_ds)
    res.lake = target
    where = f"scratch lake {target.uri}" if scratch else f"lake {target.uri}"
    console.print(f"Landing {dataset_id} ds={partition_ds} in {where}"
                  + (f" (the committed partition in {lake_named.uri} is not touched; --replace overwrites it)"
                     if scratch else ""), soft_wrap=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} records"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"{object_name} [{t0:%Y-%m-%d %H:%M}, {t1:%Y-%m-%d %H:%M})", total=None)
        result = extract(res, dataset_id, partition_ds, t0, t1,
                         progress=lambda n: bar.update(task, completed=n), ledger=not scratch)
    table = Table(title=f"Landed {dataset_id} ds={partition_ds}", title_justify="left")
    table.add_column("field")
    table.add_column("landed")
    if scratch and committed is not None:
        table.add_column("committed")
    for key, value in result.items():
        row = [key, str(value)]
        if scratch and committed is not None:
            row.append(str(committed.get(key)))
        table.add_row(*row)
    console.print(table)
    console.print(f"Landed in: {target.uri}/{Lake.partition(dataset.lake_path, partition_ds)}", soft_wrap=True)


def new_scratch_dir() -> str:
    """A new folder for a scratch lake: ``$TALLY_HOME/scratch/<UTC timestamp>``."""
    from datetime import UTC, datetime

    from tally.core import paths

    base = paths.tally_home() / "scratch"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder, n = base / stamp, 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    folder.mkdir(parents=True)
    return str(folder)


def seed_baseline(lake: Lake, scratch: Lake, dataset_path: str, ds: str) -> str | None:
    """Copy the manifest of the last ds committed in ``lake`` before ``ds`` into ``scratch`` (the
    manifest only: it is what makes an extract incremental and its schema-drift baseline);
    returns that ds, or None when there is none (the extract is then a full initial load)."""
    from tally.lake import Lake

    earlier = [d for d in lake.committed(dataset_path) if d < ds]
    if not earlier:
        return None
    manifest = lake.read_manifest(dataset_path, earlier[-1])
    if manifest is None:
        return None
    scratch.fs.create_dir(scratch.path(Lake.partition(dataset_path, earlier[-1])), recursive=True)
    scratch.write_manifest(dataset_path, earlier[-1], manifest)
    return earlier[-1]


def register(app: typer.Typer) -> None:
    app.add_typer(extract_app, name="extract")
