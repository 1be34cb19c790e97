"""Which ds a backfill can rebuild exactly, and from where: the rule the CLI plans with and the
DAG's extract task enforces at run time (:func:`source_for`).

Tally's sources hold only **current state**: a Salesforce object (Opportunity, Account, User,
Contact, Task) and an ERP table answer with each record as it is now, and an incremental
extract selects by the change time of that latest version. Extracting a past day today
therefore silently misses every record changed since that day (its later version is out of the
day's window, the day's version is gone), and cannot see that day's deletes either. So a ds is
rebuilt from:

- ``lake``: every raw dataset (``tally.contract.RAW_DATASETS``) has a committed raw partition
  for the ds: the backfill reprocesses what was landed on the day (verified against its
  manifest). Exact.
- ``extract``: the ds is the daily run's own ds (``today - 1``, UTC: its interval has ended and
  nothing has changed since more than the daily run itself would see). Exact as the daily run is.
- otherwise it is **refused**, with the reason and what to do. A ds landed for only some raw
  datasets is refused too, naming the missing ones; a ds whose day has not ended is refused.

Some data could in principle be rebuilt from history: ``DatedConversionRate`` is effective-dated
(each rate carries its ``StartDate``/``NextStartDate``, so the rates in force on a day can be
queried later), ``OpportunityHistory`` is append-only (a day's stage changes stay as written),
and the Kafka activity events are append-only (replayable from their offsets while the topic
retains them). A ds still needs Opportunity, Account, User and the ERP tables as they were on
that day, which only the lake (or a snapshot of the source) holds: so history objects alone
never make a past ds exact, and the rule does not special-case them.

Pure functions: the lake's listing (:func:`landed`) is read by the caller and passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from tally import contract

if TYPE_CHECKING:
    from tally.lake import Lake

LAKE = "lake"
EXTRACT = "extract"
DOC = "docs/backfill.md"
# Raw datasets named first when a refusal names one: the ones a day depends on most.
CURRENT_STATE_FIRST = ("salesforce.Opportunity", "salesforce.Account", "erp.sales_orders", "erp.customers")


@dataclass(frozen=True)
class Decision:
    """Where ds's raw data comes from in a backfill: ``source`` ``lake`` or ``extract``, or None
    when refused (``reason`` then says why and what to do)."""

    ds: str
    source: str | None
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.source is None


def utc_today() -> date:
    return datetime.now(UTC).date()


def landed(lake: Lake, datasets: Iterable[str] = contract.RAW_DATASETS) -> dict[str, set[str]]:
    """{raw dataset id: the ds it has a committed (manifested) raw partition for}."""
    from tally import catalog

    return {d: set(lake.committed(catalog.get(d).lake_path)) for d in datasets}


def complete_days(landed: Mapping[str, Iterable[str]], datasets: Iterable[str] = contract.RAW_DATASETS) -> list[str]:
    """The ds every raw dataset has landed, sorted."""
    sets = [set(landed.get(d, ())) for d in datasets]
    return sorted(set.intersection(*sets)) if sets else []


def days(start: str, end: str) -> list[str]:
    """Every ds from ``start`` to ``end``, both included."""
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def contiguous(ds_values: Iterable[str]) -> list[tuple[str, str]]:
    """Runs of consecutive days as (first, last), in order: one backfill each."""
    out: list[tuple[str, str]] = []
    for ds in sorted(set(ds_values)):
        if out and date.fromisoformat(ds) - date.fromisoformat(out[-1][1]) == timedelta(days=1):
            out[-1] = (out[-1][0], ds)
        else:
            out.append((ds, ds))
    return out


def spans(ds_values: Iterable[str], limit: int = 3) -> str:
    """``2026-12-02 … 2026-12-06, 2026-12-09`` (at most ``limit`` runs, then ``…``)."""
    runs = contiguous(ds_values)
    text = [a if a == b else f"{a} … {b}" for a, b in runs[:limit]]
    return ", ".join(text) + (f" and {len(runs) - limit} more" if len(runs) > limit else "")


def _ordered(datasets: Iterable[str]) -> list[str]:
    rank: dict[str, int] = {}
    for d in (*CURRENT_STATE_FIRST, *contract.RAW_DATASETS):
        rank.setdefault(d, len(rank))
    return sorted(set(datasets), key=lambda d: (rank.get(d, len(rank)), d))


def _next_buildable(ds: str, complete: list[str], today: date) -> str:
    later = [d for d in complete if d > ds]
    return later[0] if later else (today - timedelta(days=1)).isoformat()


def source_for(ds: str, landed: Mapping[str, Iterable[str]], today: date) -> Decision:
    """The backfill's source for ``ds``: ``landed`` is {raw dataset id: committed raw ds} (the
    :func:`landed` listing), ``today`` the current UTC date."""
    day = date.fromisoformat(ds)
    if day >= today:
        return Decision(ds, None, f"ds={ds} cannot be built yet: its day has not ended (today is {today} UTC); "
                                  f"the daily run builds it after midnight UTC.")
    missing = _ordered(d for d in contract.RAW_DATASETS if ds not in set(landed.get(d, ())))
    if not missing:
        return Decision(ds, LAKE)
    if day == today - timedelta(days=1):  # the daily run's own ds: its sources' state is that day's end
        return Decision(ds, EXTRACT)
    complete = complete_days(landed)
    retry = _next_buildable(ds, complete, today)
    if len(missing) == len(contract.RAW_DATASETS):
        others = len(missing) - 1
        who = f"{missing[0]} holds" if not others else f"{missing[0]} and {others} other raw datasets hold"
        held = f"the lake holds {spans(complete)}" if complete else "the lake holds no complete day"
        return Decision(ds, None, f"ds={ds} cannot be built exactly: {who} only current state and the lake has no "
                                  f"raw partition for that day ({held}); records changed since would be missing. "
                                  f"Backfill from {retry}, or land the day from a source snapshot ({DOC}).")
    have = len(contract.RAW_DATASETS) - len(missing)
    return Decision(ds, None, f"ds={ds} cannot be built exactly: the lake has that day's raw partition for only "
                              f"{have} of {len(contract.RAW_DATASETS)} raw datasets; missing: {', '.join(missing)}. "
                              f"Their sources hold only current state, so records changed since would be missing. "
                              f"Land those datasets for that day from a source snapshot ({DOC}), "
                              f"or backfill from {retry}.")


def plan_range(ds_values: Iterable[str], landed: Mapping[str, Iterable[str]], today: date) -> list[Decision]:
    """:func:`source_for` of every ds, in order."""
    return [source_for(ds, landed, today) for ds in sorted(ds_values)]


def refusals(decisions: Iterable[Decision]) -> list[Decision]:
    return [d for d in decisions if d.refused]
