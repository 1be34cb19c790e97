"""The end of `tally backfill`: per ds, what happened, rows at every hop, mart money before vs
after, and the reconcile verdict; and the command's exit code.

The money totals are the mart side of the mart gate's reconciliation (``gates/sql/<mart>
.observed.sql``, the statements ``tally.gates.mart.mart_totals`` compares with the curated zone),
restricted to the money checks. :func:`read_money` reads them (a mart that does not exist yet:
None); everything else here is pure, so that it is tested on hand-built ledger flows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from tally.contract import MART_SCHEMA, MARTS
from tally.ledger import HOPS, Entry
from tally.reconcile.verdict import Code, Judgement

if TYPE_CHECKING:
    import psycopg

# {mart: {check: value}}; a mart that did not exist: None
Money = dict[str, dict[str, Decimal] | None]
MONEY_WORDS = ("amount", "pipeline")
# reconcile's precedence (tally.reconcile.verdict._overall): the worst ds decides the exit code
PRECEDENCE = (Code.LOST, Code.NOT_LOADED, Code.NOT_PUBLISHED, Code.IN_PROGRESS, Code.NO_RUN, Code.STALE)
STATUS_STYLE = {"run": "green", "skipped": "dim", "failed": "red", "not run": "yellow"}


def is_money(check: str) -> bool:
    """A money total among a mart's reconciliation checks (``sum_won_amount``, ``sum_open_pipeline``)."""
    return check.startswith("sum_") and any(word in check for word in MONEY_WORDS)


def read_money(conn: psycopg.Connection, ds: str, marts: Iterable[str] = MARTS) -> Money:
    """The money totals of every mart's ds slice, as the mart gate computes its mart side."""
    import psycopg
    from psycopg import sql

    from tally.gates.common import sql_statements
    from tally.gates.mart import totals_parameters

    out: Money = {}
    params = totals_parameters(ds)
    for mart in marts:
        if conn.execute("SELECT to_regclass(%s)", (f"{MART_SCHEMA}.{mart}",)).fetchone()[0] is None:
            out[mart] = None
            continue
        totals: dict[str, Decimal] = {}
        for statement in sql_statements(f"{mart}.observed.sql"):
            try:
                with conn.transaction():  # a statement over a table not there yet must not spoil the rest
                    cur = conn.execute(sql.SQL(statement).format(mart=sql.Identifier(MART_SCHEMA, mart)),  # type: ignore[arg-type]
                                       params)
                    row = cur.fetchone()
                    names = [c.name for c in cur.description or ()]
            except psycopg.errors.UndefinedTable:
                continue
            totals |= {n: Decimal(v) for n, v in zip(names, row or (), strict=False) if is_money(n) and v is not None}
        out[mart] = totals
    return out


def hop_rows(flow: Mapping[str, Mapping[str, Entry]]) -> dict[str, int | None]:
    """Rows at each hop, summed over the datasets the ledger has at that hop (None: no entry)."""
    out: dict[str, int | None] = dict.fromkeys(HOPS)
    for hops in flow.values():
        for hop, entry in hops.items():
            out[hop] = (out[hop] or 0) + entry.row_count
    return out


def status_of(run: Mapping[str, Any] | None, in_backfill: bool) -> str:
    """``run`` (this backfill ran it and it succeeded), ``failed``, ``skipped`` (the backfill kept an
    existing run: reprocess behaviour), ``not run`` (no run at all), or the run's state while going."""
    if run is None:
        return "not run"
    if not in_backfill:
        return "skipped"
    state = run.get("state")
    return {"success": "run", "failed": "failed"}.get(state or "", state or "not run")


@dataclass(frozen=True)
class DsResult:
    ds: str
    source: str | None  # lake / extract (the plan's), None: not planned by this command (attached)
    status: str
    rows: dict[str, int | None]
    judgement: Judgement
    before: Money = field(default_factory=dict)
    after: Money = field(default_factory=dict)
    seconds: float | None = None


def money_lines(before: Money, after: Money) -> list[str]:
    """``rep_performance.won_amount: 1,200.00 → 1,250.00`` per money check; a total that did not
    change shows ``(unchanged)``; a mart missing on one side shows ``·`` there, on both ``no table``."""
    lines = []
    for mart in sorted({*before, *after}):
        b, a = before.get(mart), after.get(mart)
        if b is None and a is None and mart in after:  # not built yet, before nor after
            lines.append(f"{mart.removeprefix('mart_')}: no table")
            continue
        for check in sorted({*(b or {}), *(a or {})}):
            old, new = (b or {}).get(check), (a or {}).get(check)
            text = f"{_num(old)} → {_num(new)}" if old != new else f"{_num(new)} (unchanged)"
            lines.append(f"{mart.removeprefix('mart_')}.{check.removeprefix('sum_')}: {text}")
    if lines and all(line.endswith(": no table") for line in lines):
        return ["no mart tables yet"]
    return lines


def _num(value: Decimal | None) -> str:
    return "·" if value is None else f"{value:,}"


def exit_code(results: Iterable[DsResult]) -> int:
    """0 when every ds reconciled (its verdict is ok), else the worst ds's reconcile code (1 rows
    lost, 3 stopped by a failed task, 7 not published, 5 in progress, 4 no run, 8 stale)."""
    codes = {r.judgement.code for r in results}
    return int(next((c for c in PRECEDENCE if c in codes), Code.OK))


def summary_table(results: Iterable[DsResult]) -> Table:
    table = Table(title="tally backfill: every ds", title_justify="left", show_lines=True,
                  caption="rows: summed over the datasets at each hop (tally reconcile --ds DS shows each dataset); "
                          "money: the mart gate's totals of the ds slice, before → after",
                  caption_justify="left")
    table.add_column("ds", no_wrap=True)
    table.add_column("source")
    table.add_column("status")
    for hop in HOPS:
        table.add_column(hop, justify="right", no_wrap=True)
    table.add_column("money (before → after)", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for r in results:
        style = STATUS_STYLE.get(r.status, "cyan")
        code_style = "green" if r.judgement.code is Code.OK else "red" if r.judgement.code is Code.LOST else "yellow"
        took = f"\n{r.seconds:.0f}s" if r.seconds else ""
        table.add_row(r.ds, r.source or "·", f"[{style}]{escape(r.status)}[/{style}]{took}",
                      *(f"{n:,}" if n is not None else "·" for n in (r.rows.get(h) for h in HOPS)),
                      escape("\n".join(money_lines(r.before, r.after)) or "·"),
                      f"[{code_style}]{escape(verdict_text(r.judgement))}[/{code_style}]")
    return table


def verdict_text(judgement: Judgement, shown: int = 2) -> str:
    """``ok`` or the headline and the first datasets that are not ok (as `tally reconcile --ds`)."""
    if judgement.code is Code.OK:
        return "ok: every hop agrees (exit 0)"
    bad = [f"{v.dataset}: {v.text}" for v in judgement.verdicts.values() if v.code is not Code.OK]
    more = f"\n… {len(bad) - shown} more" if len(bad) > shown else ""
    return "\n".join([f"{judgement.headline} (exit {int(judgement.code)})", *bad[:shown]]) + more
