"""Rich tables for people: the ledger flow, gate results, the stack's status."""

from __future__ import annotations

from rich.table import Table

from tally.ledger import HOPS, Entry, first_divergence


def flow_table(flow: dict[str, dict[str, Entry]], ds: str) -> Table:
    table = Table(title=f"Rows at every hop, ds={ds}", title_justify="left")
    table.add_column("dataset", overflow="fold", min_width=22)  # never truncate: names differ at the end
    for hop in HOPS:
        table.add_column(hop, justify="right")
    table.add_column("verdict")
    for dataset, hops in sorted(flow.items()):
        cells = [f"{hops[h].row_count:,}" if h in hops else "·" for h in HOPS]
        div = first_divergence(hops)
        verdict = f"[red]lost {div[0]}→{div[1]}: {div[2]}[/red]" if div else "[green]ok[/green]"
        table.add_row(dataset, *cells, verdict)
    return table


def gates_table(results: list[dict]) -> Table:
    table = Table(title="Quality gates", title_justify="left")
    for col in ("hop", "dataset", "result", "checks"):
        table.add_column(col, overflow="fold")
    for r in results:
        ok = "[green]passed[/green]" if r["success"] else "[red]FAILED[/red]"
        checks = f"{r['evaluated'] - r['failed']}/{r['evaluated']}"
        table.add_row(r["hop"], r["dataset"], ok, checks if r["success"] else r["summary"])
    return table


def divergences(flow: dict[str, dict[str, Entry]]) -> list[str]:
    out = []
    for dataset, hops in sorted(flow.items()):
        div = first_divergence(hops)
        if div:
            out.append(f"{dataset}: rows lost between {div[0]} and {div[1]} ({div[2]})")
    return out
