"""`tally lake`: keep the lake bounded (docs/lake.md): ``compact`` merges the small files of old
raw partitions (the same rows, the same commit identity), ``prune`` removes the state and curated
partitions the retention policy no longer keeps. Both print what they did (or, with
``--dry-run``, would do) as a table; a bad option is one line and exit 2; exit 1 when a partition
was refused (its files do not match its commit record)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from tally import contract
from tally.cli import common, params
from tally.cli.common import console
from tally.cli.output import Col, Format, FormatOption, emit, new_table
from tally.lake import Lake, retention
from tally.lake import compact as lake_compact

lake_app = typer.Typer(help="Keep the lake bounded: compact raw partitions, prune old state and curated ones.",
                       no_args_is_help=True)

LakeOption = Annotated[str | None, params.lake_option("The lake (a directory or s3://bucket/prefix); default: "
                                                      "the profile's.")]


# The raw datasets a lake can hold: the catalog's and the event stream's (kafka.activity).
RawDataset = StrEnum("RawDataset", {d: d for d in (*contract.RAW_DATASETS,
                                                    f"kafka.{contract.EVENTS_TOPIC.rsplit('.', 1)[-1]}")})


def _lake(uri: str | None) -> Lake:
    return Lake(uri) if uri else common.require_profile().resources().lake


def _today() -> date:
    return datetime.now(UTC).date()


@lake_app.command("compact")
def compact_cmd(
    dataset: Annotated[RawDataset | None, typer.Option("--dataset", metavar="ID", show_choices=False,
                                                       help="Only this raw dataset, e.g. salesforce.Opportunity "
                                                       "(default: every raw dataset).")] = None,
    ds: Annotated[str | None, params.ds_option("Only this ds (at least 2 days old).", "--ds")] = None,
    older_than_days: Annotated[int | None, typer.Option("--older-than-days", metavar="N", min=1,
                                                        help="Only ds at least N days old (default 2: never "
                                                        "today's or yesterday's).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be compacted; change "
                                          "nothing.")] = False,
    lake: LakeOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Rewrite each old raw partition holding many small files into as few files as possible (at
    most 1,000,000 rows each): the same rows, verified against the commit record before the new
    manifest is committed, and the same commit identity (the states built on it stay valid).
    Kafka partitions are not compacted (the table says why)."""
    if ds is not None and older_than_days is not None:
        raise params.InputError("give --ds or --older-than-days, not both")
    today = _today()
    policy = lake_compact.CompactionPolicy(older_than_days=older_than_days or 2)
    if ds is not None and ds > policy.cutoff(today):
        raise params.InputError(f"--ds {ds} is less than {policy.older_than_days} days old (newest allowed: "
                                f"{policy.cutoff(today)}): its partition may still be written")
    where = _lake(lake)
    datasets = None
    if dataset is not None:
        known = {lake_compact.dataset_id(p): p for p in lake_compact.raw_datasets(where)}
        if dataset.value not in known:
            raise params.InputError(f"--dataset {dataset.value} has no raw partitions in the lake; it holds: "
                                    f"{', '.join(sorted(known)) or 'none'}")
        datasets = [known[dataset.value]]
    done = lake_compact.run(where, policy, today, datasets=datasets, ds=ds, dry_run=dry_run)
    records = [c.to_dict() for c in done]
    fields = ["dataset", "ds", "action", "files_before", "files_after", "rows", "bytes_before", "reason"]

    def show() -> None:
        title = ("Compaction plan (dry run: nothing changed)" if dry_run else "Compaction") + \
            f", ds up to {policy.cutoff(today) if ds is None else ds}"
        table = new_table(title, [Col("dataset", kind="token"), Col("ds", kind="token"), Col("action", kind="token"),
                                  Col("files before", kind="number"), Col("files after", kind="number"),
                                  Col("rows", kind="number"), Col("MiB before", kind="number"), "reason"])
        for c in done:
            style = {"compacted": "green", "compact": "cyan", "refused": "red"}.get(c.action, "dim")
            table.add_row(c.dataset_id, c.ds, f"[{style}]{c.action}[/{style}]", str(c.files_before),
                          str(c.files_after), str(c.rows), f"{c.bytes_before / 2**20:.1f}", escape(c.reason))
        console.print(table)
        acted = [c for c in done if c.action in ("compact", "compacted")]
        before, after = sum(c.files_before for c in acted), sum(c.files_after for c in acted)
        verb = "would go" if dry_run else "went"
        console.print(f"{len(acted)} partition(s): {before} files {verb} to {after}.", highlight=False)

    emit(fmt, records=records, fields=fields, table=show)
    if any(c.action == "refused" for c in done):
        raise typer.Exit(1)


@lake_app.command("prune")
def prune_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be removed; remove "
                                          "nothing.")] = False,
    lake: LakeOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Remove the state and curated partitions the retention policy no longer keeps (raw and
    quarantine are kept forever): state keeps its newest 35 ds, every month's last ds and its
    newest valid ds; curated keeps its newest 35 ds."""
    where = _lake(lake)
    planned = retention.plan(where, retention.RetentionPolicy(), _today())
    done = planned if dry_run else retention.apply(where, planned)
    records = [p.to_dict() for p in done]

    def show() -> None:
        title = "Retention plan (dry run: nothing removed)" if dry_run else "Pruned"
        table = new_table(title, [Col("zone", kind="token"), Col("dataset", kind="path"), Col("ds", kind="token"),
                                  "reason"])
        for p in done:
            table.add_row(p.zone, p.dataset, p.ds, escape(p.reason))
        console.print(table)
        verb = "would be" if dry_run else "were"
        console.print(f"{len(done)} partition(s) {verb} removed; raw and quarantine are kept forever.",
                      highlight=False)

    emit(fmt, records=records, fields=["zone", "dataset", "ds", "reason"], table=show)


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")

