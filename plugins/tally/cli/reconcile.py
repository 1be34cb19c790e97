"""`tally reconcile`: the ledger's flow for one ds with sample lost keys, or (``--full``) the ERP's
current rows vs the warehouse (``tally.reconcile``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from tally.cli import common, params
from tally.cli.common import console
from tally.cli.output import Format, FormatOption

if TYPE_CHECKING:
    import psycopg

    from tally.core.profile import Profile
    from tally.reconcile.verdict import DagRun, Judgement


def reconcile(
    ds: Annotated[str | None, params.ds_option("Logical date YYYY-MM-DD (required without --full)")] = None,
    full: Annotated[bool, typer.Option("--full", help="Compare every ERP key and version, source vs warehouse, "
                                       "and heal what differs (docs/reconciliation.md).")] = False,
    heal: Annotated[bool, typer.Option(help="With --full: re-extract what differs (--no-heal: only report).")] = True,
    table: params.ErpTableOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Print rows and key checksums at every hop for ds from the ledger, judged with what
    tally_daily's run for ds did (its task states, from Airflow's API): the hop that lost rows, or
    the failed task that stopped a dataset before a hop, or that the ds has no run; sample keys of
    what was lost. Exit 0 every hop agrees, 1 rows lost at a hop that ran, 2 usage error, 3 not
    loaded (a task failed), 4 no run for ds, 5 run in progress, 6 cannot reach the warehouse, 7 staged, not published (the
    warehouse gate failed or the publish has not run), 8 stale (built from raw partitions re-landed since). With --full, reconcile the ERP's
    current rows with the warehouse instead."""
    if full:
        if ds is not None:
            raise params.InputError("--full compares every current ERP row, not one ds: drop --ds")
        _reconcile_full(table, heal, fmt)
        return
    if ds is None:
        raise params.InputError("--ds is required (or --full)")
    if table:
        raise params.InputError("--table applies with --full only")
    _reconcile_ds(ds, fmt)


def _reconcile_ds(ds: str, fmt: Format) -> None:
    """The ledger's flow for ds judged with the run's task states (``tally.reconcile.verdict``);
    exits with the verdict's code (0 ok, 1 lost, 3 not loaded, 4 no run, 5 in progress, 7 not published,
    8 stale)."""
    import psycopg

    from tally.cli.output import emit
    from tally.reconcile.report import flow_records, flow_table
    from tally.reconcile.verdict import Code

    profile = common.require_profile()
    with psycopg.connect(profile.warehouse.conninfo()) as conn:  # an unreachable warehouse: exit 6 at once
        run, known, note = dag_run_of(profile, ds)
        flow, judgement = judged(profile, conn, ds, run, airflow_known=known)
    # sample keys compare the lake with the warehouse (and the mart): only where this run loaded it
    lost = [d for d, v in judgement.verdicts.items() if v.code is Code.LOST and "warehouse" in v.current]
    keys = _lost_keys(profile, ds, lost)
    records = flow_records(flow, judgement)
    if fmt is not Format.table and note:
        typer.echo(note, err=True)

    def show() -> None:
        if note:
            console.print(note, style="yellow", markup=False, highlight=False)
        if flow or judgement.verdicts:
            console.print(flow_table(flow, ds, judgement))
        style = "green" if judgement.code is Code.OK else "red" if judgement.code is Code.LOST else "yellow"
        console.print(f"{judgement.headline} (exit {int(judgement.code)})", style=style, markup=False,
                      highlight=False)
        for line in keys.values():
            console.print(line, style="red", markup=False, highlight=False)
        if judgement.code is Code.STALE:
            console.print(f"Replay it and every later stale ds, in order: tally backfill --start {ds} --end "
                          "<the last ds> --missing (docs/backfill.md)", markup=False, highlight=False)

    document = {"ds": ds, "headline": judgement.headline, "code": int(judgement.code), "airflow": note or "read",
                "datasets": records, "lost_keys": keys}
    emit(fmt, records=records, fields=list(records[0]) if records else ["dataset"], document=document, table=show)
    raise typer.Exit(int(judgement.code))


def judged(profile: Profile, conn: psycopg.Connection, ds: str, run: DagRun | None, *,
           airflow_known: bool = True) -> tuple[dict, Judgement]:
    """(the ledger's flow for ds, its verdict): the ledger, the ds's publication state, its run and
    whether its inputs went stale since it was built. `tally reconcile --ds` and `tally backfill`."""
    from tally import ledger
    from tally.load import wap
    from tally.reconcile.verdict import Publication, judge

    flow = ledger.flow(conn, ds)
    return flow, judge(flow, run, ds, airflow_known=airflow_known, publication=Publication(**wap.state(conn, ds)),
                       stale=stale_inputs(profile, ds))


def stale_inputs(profile: Profile, ds: str) -> dict[str, str]:
    """{raw dataset: why} whose state for ds no longer reflects the raw zone (``tally.lake.state``)."""
    from tally.lake import Lake
    from tally.lake.state import stale_at

    return stale_at(Lake(profile.lake), ds)


def dag_run_of(profile: Profile, ds: str) -> tuple[DagRun | None, bool, str | None]:
    """(the ds's tally_daily run or None when it has none, whether Airflow answered, a one-line
    note when it did not): the verdict then rests on the ledger alone."""
    from urllib.parse import urlsplit

    import requests

    from tally.cli.airflow_api import AirflowClient
    from tally.core.dates import ds_interval
    from tally.reconcile.verdict import DAG_ID, DagRun

    fallback = "verdicts from the ledger alone"
    if profile.airflow is None:
        return None, False, f"The profile names no Airflow API: {fallback}."
    parts = urlsplit(profile.airflow.url)
    where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")  # never a userinfo
    try:
        client = AirflowClient(profile.airflow.url, profile.airflow.user, profile.airflow.password, timeout=10)
        found = client.latest_run_at(DAG_ID, ds_interval(ds)[0])
        if found is None:
            return None, True, None
        tasks = client.tasks(DAG_ID, found["dag_run_id"])
    except (requests.RequestException, RuntimeError, ValueError, KeyError) as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            reason += f" {exc.response.status_code}"
        elif isinstance(exc, RuntimeError):  # the client's own message: the login's status and reply
            reason = " ".join(str(exc).split())[:120]
        return None, False, f"Airflow unreachable at {where} ({reason}): {fallback}."
    return DagRun(found["dag_run_id"], found.get("state"), {t.task_id: t.state for t in tasks}), True, None


def _lost_keys(profile: Profile, ds: str, datasets: list[str]) -> dict[str, str]:
    """Sample keys missing between the lake and the warehouse (and the mart) of datasets that lost rows."""
    from tally.lake.verify import PartitionMismatch
    from tally.reconcile.keys import key_diff

    out: dict[str, str] = {}
    if not datasets:
        return out
    res = profile.resources()
    for dataset in datasets:
        try:
            diff = key_diff(res.lake, res.warehouse, dataset, ds)
        except (KeyError, FileNotFoundError):
            continue
        except PartitionMismatch as exc:  # the lake's files are not what was committed: that is the loss
            out[dataset] = f"{dataset}: {exc}"
            continue
        if diff and (diff.missing_count or diff.extra_count):
            out[dataset] = (f"{dataset}: {diff.missing_count} key(s) in {diff.left} missing from {diff.right}"
                            f"{', e.g. ' + ', '.join(diff.missing) if diff.missing else ''}; {diff.extra_count} extra"
                            f"{', e.g. ' + ', '.join(diff.extra) if diff.extra else ''}")
    return out


def _reconcile_full(tables: list[str] | None, heal: bool, fmt: Format = Format.table) -> None:
    """`tally reconcile --full`: one row per ERP table; exit 1 while differences are left."""
    from tally.cli.output import emit
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
    records, reports = [], []
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
        reports.append(r)
        records.append({"table": d.dataset_id, "status": r.status, "source_rows": r.source_rows, "cutoff": r.cutoff,
                        **{c: r.found.get(c, 0) for c in (*PROBLEMS, "in_flight", "quarantined")},
                        "healed": sum(r.healed.values()), "left": r.problems_left,
                        "seconds": round(r.seconds.get("total", 0), 1)})

    def show() -> None:
        console.print(out)
        for line in details:
            console.print(f"  {line}", markup=False, highlight=False)

    tables = [{**rec, "samples": r.samples, "notes": r.notes} for rec, r in zip(records, reports, strict=True)]
    emit(fmt, records=records, fields=list(records[0]) if records else ["table"], table=show,
         document={"tables": tables, "problems_left": left_total})
    raise typer.Exit(1 if left_total else 0)


def register(app: typer.Typer) -> None:
    app.command()(reconcile)
