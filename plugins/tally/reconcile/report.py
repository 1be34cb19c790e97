"""Rich tables for people: the ledger flow, gate results, the stack's status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from tally.ledger import ACCOUNTING, HOPS, Entry, accounting, first_divergence
from tally.reconcile.verdict import Code, Judgement


def flow_table(flow: Mapping[str, Mapping[str, Entry]], ds: str, judgement: Judgement | None = None) -> Table:
    """Rows and key checksum at every hop, and a verdict per dataset: ``judgement``'s
    (``tally.reconcile.verdict``) when given, else the ledger's first divergence. A hop the run did
    not write (an earlier run's entry) is dimmed and marked ``(earlier run)``."""
    table = Table(title=f"Rows and key checksums at every hop, ds={ds}", title_justify="left",
                  caption=_caption(judgement), caption_justify="left")
    table.add_column("dataset", overflow="fold", min_width=22)  # never truncate: names differ at the end
    for _, header in ACCOUNTING:  # what the source counted, and where each of its rows went
        table.add_column(header, justify="right", no_wrap=True)
    for hop in HOPS:
        table.add_column(hop, justify="right", no_wrap=True)
    table.add_column("verdict", overflow="fold", min_width=30)
    verdicts = judgement.verdicts if judgement else {}
    for dataset in sorted({*flow, *verdicts}):
        hops, v = flow.get(dataset, {}), verdicts.get(dataset)
        cells = [_cell(hops[h], v is None or v.code is Code.NO_RUN or h in v.current) if h in hops else "·" for h in HOPS]
        if v is None:
            div = first_divergence(dict(hops))
            verdict = f"[red]lost {div[0]}→{div[1]}: {div[2]}[/red]" if div else "[green]ok[/green]"
        else:
            style = VERDICT_STYLE.get(v.code, "red")
            verdict = f"[{style}]{escape(v.text)}[/{style}]"
        acc = accounting(hops)
        table.add_row(dataset, *(acc.cells() if acc else ["·"] * len(ACCOUNTING)), *cells, verdict)
    return table


VERDICT_STYLE = {Code.OK: "green", Code.IN_PROGRESS: "cyan", Code.NO_RUN: "yellow", Code.NOT_LOADED: "yellow",
                 Code.NOT_PUBLISHED: "yellow"}


def _cell(e: Entry, current: bool) -> str:
    text = f"{e.row_count:,}" + (f"\n{e.key_checksum}" if e.key_checksum else "")
    return text if current else f"[dim]{text}\n(earlier run)[/dim]"


def _caption(judgement: Judgement | None) -> str | None:
    if judgement is None or judgement.code is Code.NO_RUN:
        return None
    return "Each cell: rows, then the key checksum. (earlier run): the hop's task did not run this time."


def flow_records(flow: Mapping[str, Mapping[str, Entry]], judgement: Judgement) -> list[dict[str, Any]]:
    """One record per dataset for scripts: ``verdict``, ``code``, and per hop ``<hop>_rows``,
    ``<hop>_key_checksum`` and ``<hop>_this_run`` (None where the ledger has no entry)."""
    out = []
    for dataset in sorted({*flow, *judgement.verdicts}):
        hops, v = flow.get(dataset, {}), judgement.verdicts.get(dataset)
        record: dict[str, Any] = {"dataset": dataset, "verdict": v.text if v else None,
                                  "code": int(v.code) if v else None}
        acc = accounting(hops)
        record |= acc.as_record() if acc else dict.fromkeys(name for name, _ in ACCOUNTING)
        for hop in HOPS:
            e = hops.get(hop)
            record[f"{hop}_rows"] = e.row_count if e else None
            record[f"{hop}_key_checksum"] = e.key_checksum if e else None
            record[f"{hop}_this_run"] = (v is not None and hop in v.current) if e else None
        out.append(record)
    return out


def gates_table(results: list[dict]) -> Table:
    """One row per (hop, dataset) as ``tally.ledger.validation_log.latest`` summarises them: failed
    when any of its suites failed, the checks counted over all its suites, the suites named."""
    table = Table(title="Quality gates", title_justify="left")
    for col in ("hop", "dataset", "result", "checks"):
        table.add_column(col, overflow="fold")
    for r in results:
        ok = "[green]passed[/green]" if r["success"] else "[red]FAILED[/red]"
        if r.get("warnings"):
            ok += f"\n[yellow]{r['warnings']} warning{'s' if r['warnings'] != 1 else ''}[/yellow]"
        table.add_row(r["hop"], r["dataset"], ok, gate_checks(r))
    return table


def gate_checks(r: dict) -> str:
    """``7/7 passed (raw.erp.payments, schema.erp.payments)``, or for a failed dataset
    ``1 of 7 failed: <the failed suites' summaries>``."""
    suites = r.get("suites") or [r["suite"]]
    evaluated, failed = int(r["evaluated"] or 0), int(r["failed"] or 0)
    warned = f"; {r['warning_summary']}" if r.get("warning_summary") else ""
    if r["success"]:
        return f"{evaluated - failed - int(r.get('warnings') or 0)}/{evaluated} passed ({', '.join(suites)}){warned}"
    return f"{failed} of {evaluated} failed: {r['summary']}{warned}"
