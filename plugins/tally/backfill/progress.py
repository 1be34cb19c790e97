"""What `tally backfill` shows while Airflow runs a backfill: which of its runs belong to it, ds
done/total, the ds and tasks running now, elapsed and ETA. Pure: the runs come from the REST API.

Airflow's public API does not list a backfill's runs; a run belongs to the backfill when it is
a ``backfill`` run in its date range queued after the backfill was created (Airflow queues the
runs it creates, and the existing runs it clears, while creating it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

TERMINAL = frozenset({"success", "failed"})
SLACK = timedelta(seconds=5)  # clock steps between the backfill's row and its runs' queued_at
STATE_STYLE = {"success": "green", "failed": "red", "running": "yellow", "queued": "cyan"}


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def ds_of(run: Mapping) -> str:
    return str(run.get("logical_date") or run.get("data_interval_start"))[:10]


def backfill_runs(runs: Iterable[Mapping], backfill: Mapping) -> dict[str, Mapping]:
    """{ds: run} of the runs that belong to ``backfill`` (see the module doc), by ds."""
    created = when(backfill["created_at"])
    low, high = str(backfill["from_date"])[:10], str(backfill["to_date"])[:10]
    out: dict[str, Mapping] = {}
    for run in runs:
        queued = when(run.get("queued_at"))
        if (run.get("run_type") == "backfill" and low <= ds_of(run) <= high and queued is not None
                and created is not None and queued >= created - SLACK):
            out[ds_of(run)] = run
    return dict(sorted(out.items()))


def seconds_of(run: Mapping) -> float | None:
    if run.get("duration") is not None:
        return float(run["duration"])
    start, end = when(run.get("start_date")), when(run.get("end_date"))
    return (end - start).total_seconds() if start and end else None


@dataclass(frozen=True)
class Snapshot:
    total: int
    done: int
    failed: int
    running: list[str]  # ds running now
    elapsed: float
    eta: float | None  # seconds left: the mean duration of the finished ds × the ds left

    @property
    def finished(self) -> bool:
        return self.done == self.total


def snapshot(runs: Mapping[str, Mapping], elapsed: float) -> Snapshot:
    finished = [r for r in runs.values() if r.get("state") in TERMINAL]
    durations = [s for r in finished if (s := seconds_of(r)) is not None]
    left = len(runs) - len(finished)
    eta = sum(durations) / len(durations) * left if durations else None
    return Snapshot(total=len(runs), done=len(finished), failed=sum(r.get("state") == "failed" for r in finished),
                    running=[ds for ds, r in runs.items() if r.get("state") == "running"], elapsed=elapsed, eta=eta)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def render(backfill: Mapping, snap: Snapshot, runs: Mapping[str, Mapping], tasks_now: Iterable[str]) -> Group:
    """The live view: a header with the counts and times (and what runs now), then one row per ds."""
    paused = " [yellow](paused)[/yellow]" if backfill.get("is_paused") else ""
    now = ", ".join(tasks_now)
    title = (f"backfill #{backfill['id']} tally_daily {str(backfill['from_date'])[:10]} … "
             f"{str(backfill['to_date'])[:10]}{paused}: {snap.done}/{snap.total} ds done"
             + (f", [red]{snap.failed} failed[/red]" if snap.failed else "")
             + f"  elapsed {clock(snap.elapsed)}  ETA {clock(snap.eta) if snap.done < snap.total else '-'}")
    if snap.running:
        title += f"\nrunning: ds={', '.join(snap.running)}" + (f"  task: {escape(now)}" if now else "")
    table = Table()
    table.add_column("ds")
    table.add_column("state")
    table.add_column("took", justify="right")
    for ds, run in runs.items():
        state = run.get("state") or "none"
        style = STATE_STYLE.get(state, "dim")
        took = seconds_of(run) if state in TERMINAL else None
        table.add_row(ds, f"[{style}]{state}[/{style}]", clock(took) if took is not None else "")
    return Group(Text.from_markup(title), table)
