"""`tally reconcile`: the ledger's flow for one ds with sample lost keys, or (``--full``) the ERP's
current rows vs the warehouse (``tally.reconcile``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tally.cli import common
from tally.cli.common import console


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
    from tally.reconcile.keys import key_diff
    from tally.reconcile.report import divergences, flow_table

    profile = common.require_profile()
    with psycopg.connect(profile.warehouse.conninfo()) as conn:
        flow = ledger.flow(conn, ds)
    if not flow:
        console.print(f"no ledger entries for ds={ds}")
        raise typer.Exit(1)
    console.print(flow_table(flow, ds))
    lost = divergences(flow)
    for line in lost:
        console.print(f"[red]{line}[/red]")
    res = profile.resources()
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
    from tally.reconcile.full import PROBLEMS, Options, erp_datasets, reconcile_table

    res = common.require_profile().resources()
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


def register(app: typer.Typer) -> None:
    app.command()(reconcile)
