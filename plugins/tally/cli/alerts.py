"""`tally alerts`: on-call alerts recorded in ops.alerts (see docs/runbook.md): list, show, ack.

An alert is open until acknowledged, or resolved by a later passing run of its gate
(``tally.alerts.store.resolve_passed``: ``--all`` lists those with their resolution note)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from tally.cli import common, params
from tally.cli.common import console
from tally.cli.output import Col, Format, FormatOption, emit, new_table
from tally.cli.params import DsnOption

alerts_app = typer.Typer(help="On-call alerts recorded in ops.alerts: list (default), show, ack.",
                         invoke_without_command=True)


def _alerts_conn(dsn: str | None):
    import psycopg

    return psycopg.connect(dsn or common.require_profile().warehouse.conninfo())


@alerts_app.callback()
def alerts_main(ctx: typer.Context) -> None:
    """With no sub-command: list the open alerts."""
    if ctx.invoked_subcommand is None:
        import os

        dsn = os.environ.get("TALLY_WAREHOUSE_DSN")
        alerts_list(all_=False, ds=None, limit=50, dsn=dsn and params.check_dsn(dsn, "TALLY_WAREHOUSE_DSN"),
                    fmt=Format.table)


@alerts_app.command("list")
def alerts_list(
    all_: Annotated[bool, typer.Option("--all", help="Include acknowledged and resolved alerts.")] = False,
    ds: Annotated[str | None, params.ds_option("Only this logical date (YYYY-MM-DD).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    dsn: DsnOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List open alerts (newest first): what failed, where, and whether each channel got it."""
    from tally.alerts import store

    with _alerts_conn(dsn) as conn:
        rows = store.list_alerts(conn, include_acknowledged=all_, ds=ds, limit=limit)
    records = [{k: r.get(k) for k in RECORD_FIELDS} for r in rows]
    flat = [{**r, "delivery": _delivery_text(r["delivery"])} for r in records]
    emit(fmt, records=flat, fields=RECORD_FIELDS, document={"alerts": records},
         table=lambda: _alerts_table(rows, all_))


# What `tally alerts list --format json|tsv` gives per alert (tsv: delivery as "channel:status,…").
RECORD_FIELDS = ["id", "created_at", "dag_id", "ds", "gate", "category", "summary", "occurrences",
                 "last_seen_at", "delivery", "acknowledged_at", "acknowledged_by", "note", "resolved_at",
                 "resolution"]


def _alerts_table(rows: list[dict], all_: bool) -> None:
    from rich.markup import escape

    if not rows:
        console.print("no open alerts" if not all_ else "no alerts")
        return
    table = new_table("Alerts" if all_ else "Open alerts", [
        Col("id", kind="number"), Col("raised (UTC)", kind="token"), Col("dag"), Col("ds", kind="token"),
        Col("gate / task"), Col("what"), Col("seen", kind="number"), Col("delivery"), Col("ack")])
    for r in rows:
        ack = f"[green]{escape(r['acknowledged_by'] or '')}[/green]" if r["acknowledged_at"] else "[red]open[/red]"
        if r.get("resolved_at"):
            ack = f"[green]{escape(r.get('resolution') or 'resolved')}[/green]"
        table.add_row(str(r["id"]), _utc(r["created_at"]), escape(r["dag_id"]), r["ds"],
                      escape(r["gate"]), escape(_clip(r["summary"], 90)), str(r["occurrences"]),
                      _delivery_cell(r["delivery"]), ack)
    console.print(table)
    console.print("details: [bold]tally alerts show ID[/bold]   acknowledge: [bold]tally alerts ack ID --note ...[/bold]")


@alerts_app.command("show")
def alerts_show(alert_id: Annotated[int, typer.Argument(metavar="ID", min=1)], dsn: DsnOption = None) -> None:
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
    console.print(alert.text(), markup=False, highlight=False, soft_wrap=True)  # links stay whole
    for channel, d in row["delivery"].items():
        console.print(f"{channel}: {d.get('status')} {d.get('error') or d.get('detail') or ''} {d.get('at', '')}",
                      markup=False, highlight=False)
    console.print(f"seen {row['occurrences']} time(s), last {_utc(row['last_seen_at'])} UTC")
    if row["acknowledged_at"]:
        console.print(f"acknowledged by {row['acknowledged_by']} at {_utc(row['acknowledged_at'])} UTC"
                      + (f": {row['note']}" if row["note"] else ""), markup=False, highlight=False)
    if row.get("resolved_at"):
        console.print(f"{row['resolution']} (at {_utc(row['resolved_at'])} UTC)", markup=False, highlight=False)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(metavar="ID", min=1)],
    by: Annotated[str | None, typer.Option(callback=params.not_blank,
                                           help="Who handles it; default: your user name.")] = None,
    note: Annotated[str | None, typer.Option(callback=params.not_blank,
                                             help="What you found or did.")] = None,
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


def _delivery_text(delivery: dict) -> str:
    return ",".join(f"{c}:{d.get('status')}" for c, d in (delivery or {}).items())


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


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
