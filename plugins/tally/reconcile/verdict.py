"""What `tally reconcile --ds` concludes: the ledger read together with what the DAG run did.

The ledger (``ops.ledger``) keeps, per (ds, dataset, hop), the last row count and key checksum
written; a hop whose task did not run in the ds's run still shows what an earlier run left. So
the ledger alone cannot tell "rows lost at the load" from "the load never ran". :func:`judge`
takes the ledger's flow and the run's task states (``None`` when the ds has no run; pass
``airflow_known=False`` when Airflow could not be asked) and returns one :class:`Verdict` per
dataset and an exit code. Pure: no database, no HTTP.

Exit codes (README's runbook, docs/runbook.md):

====  =========================================================================================
0     every hop that ran agrees, and the run succeeded
1     rows lost at a hop that ran (counts or key checksums differ between hops this run wrote)
2     usage error (a bad option; the CLI's, not this module's)
3     not loaded: a task failed and the hops after it did not run (or the run failed elsewhere)
4     tally_daily has not run for the ds (or, Airflow unreachable, the ledger has nothing for it)
5     the run is still in progress: some hops have not run yet
7     staged, not published: the warehouse holds the ds in staging only (gate_warehouse failed, or
      publish_warehouse failed or has not run); the published tables keep what they had
8     stale: every hop agrees, but the ds was built from raw partitions re-landed since (its state
      zone says which, ``tally.lake.state.stale_at``): run it again, with every later stale ds, in
      order (``tally backfill --missing``)
====  =========================================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from tally import contract
from tally.ledger import HOPS, Entry, first_divergence

DAG_ID = "tally_daily"
# The curated datasets the mart gate measures in a mart (tally.gates.mart.MART_LEDGER's names).
MART_DATASETS = frozenset({"rep_rankings", "order_links", "account_engagement"})
EVENTS_DATASET = "kafka.activity"

# A task that ran; gates write the ledger before they judge, so a failed gate's hop is this run's.
RAN = frozenset({"success"})
PUBLISHED = "published"
PUBLISH_TASK = "publish_warehouse"
GATE_RAN = frozenset({"success", "failed"})
PENDING = frozenset({None, "none", "scheduled", "queued", "running", "up_for_retry", "up_for_reschedule",
                     "deferred", "restarting"})
WHAT_STOPPED = {"source": "not extracted", "raw": "not extracted", "curated": "not curated",
                "warehouse": "not loaded", PUBLISHED: "staged, not published", "mart": "mart not built"}
# The steps of a dataset through tally_daily: the ledger's hops, with the publication (no ledger hop
# of its own: ``ops.publications``) between the warehouse and the mart.
STEPS = (*HOPS[:HOPS.index("warehouse") + 1], PUBLISHED, *HOPS[HOPS.index("warehouse") + 1:])


class Code(IntEnum):
    OK = 0
    LOST = 1
    USAGE = 2
    NOT_LOADED = 3
    NO_RUN = 4
    IN_PROGRESS = 5
    NOT_PUBLISHED = 7
    STALE = 8


@dataclass(frozen=True)
class DagRun:
    """One DAG run of the ds: its id, state and every task's state (``task_id`` → state)."""

    run_id: str
    state: str | None
    tasks: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Publication:
    """The warehouse's write–audit–publish state of the ds (``tally.load.wap.state``): a finished
    load waiting to be published (``staged``) and the gate's verdict on it, the last publication."""

    staged: bool = False
    gate_passed: bool | None = None
    published_at: str | None = None
    published_run: str | None = None


@dataclass(frozen=True)
class Verdict:
    dataset: str
    code: Code
    text: str
    # hops whose ledger entry this run wrote; the others (shown dimmed) are an earlier run's
    current: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Judgement:
    headline: str
    code: Code
    verdicts: dict[str, Verdict]


def producer(dataset: str, hop: str) -> tuple[str, frozenset[str]] | None:
    """The tally_daily task that writes ``hop`` of ``dataset`` and the states in which it did."""
    if dataset in contract.RAW_DATASETS:
        if hop in ("source", "raw"):
            return f"land.extract_{dataset.replace('.', '_')}", RAN
        if hop == "warehouse":
            return "load_warehouse", RAN  # gate_warehouse re-measures what the load wrote
        if hop == PUBLISHED:
            return PUBLISH_TASK, RAN
    elif dataset in contract.CURATED:
        if hop == "curated":
            return "gate_curated", GATE_RAN
        if hop == "warehouse":
            return "load_warehouse", RAN
        if hop == PUBLISHED:
            return PUBLISH_TASK, RAN
        if hop == "mart" and dataset in MART_DATASETS:
            return "gate_mart", GATE_RAN
    elif dataset == EVENTS_DATASET and hop == "raw":
        return "land_events", RAN  # tally_events writes it too, every 15 minutes
    return None


def _rank(task_id: str) -> int:
    """Where a task stands in tally_daily's chain (a failed task stops every later one)."""
    order = ("land.extract_", "land.gate_raw", "land_events", "spark_", "gate_curated", "load_warehouse",
             "gate_warehouse", PUBLISH_TASK, "dbt_build", "gate_mart")
    ranks = {"land.gate_raw": 1, "land_events": 1}
    for i, prefix in enumerate(order):
        if task_id.startswith(prefix):
            return ranks.get(prefix, i)
    return len(order)


def _failed_before(tasks: Mapping[str, str | None], task_id: str) -> list[str]:
    limit = _rank(task_id)
    return sorted((t for t, s in tasks.items() if s == "failed" and _rank(t) < limit), key=lambda t: (_rank(t), t))


def _names(tasks: list[str]) -> str:
    return ", ".join(tasks[:3]) + (f" and {len(tasks) - 3} more" if len(tasks) > 3 else "")


def _stopped(hop: str, task: str, run: DagRun) -> tuple[Code, str]:
    """Why ``hop`` (written by ``task``) has nothing from this run."""
    state = run.tasks.get(task)
    what = WHAT_STOPPED[hop]
    if state in PENDING and run.state in PENDING:  # not started yet, or still going
        return Code.IN_PROGRESS, f"in progress: {task} {state or 'not started'}"
    code = Code.NOT_PUBLISHED if hop == PUBLISHED else Code.NOT_LOADED
    if state == "failed":
        return code, f"{what}: {task} failed"
    blockers = _failed_before(run.tasks, task)
    shown = state or ("not run" if task in run.tasks else "missing from the run")
    if hop == PUBLISHED:  # "staged, not published: gate_warehouse failed" / "…: publish has not run"
        return code, f"{what}: " + (f"{_names(blockers)} failed" if blockers else f"publish has not run ({shown})")
    if blockers:
        return code, f"{what}: {_names(blockers)} failed, {task} skipped ({shown})"
    return code, f"{what}: {task} {shown}"


def _lost_text(div: tuple[str, str, str]) -> str:
    return f"lost {div[0]}→{div[1]}: {div[2]}"


def _judge_dataset(dataset: str, hops: Mapping[str, Entry], run: DagRun, publication: Publication | None) -> Verdict:
    pipeline = [(hop, p) for hop in STEPS if (p := producer(dataset, hop)) is not None]
    if publication is not None and publication.published_run == run.run_id and not publication.staged:
        # this run published the ds (a run of the DAG before publish_warehouse existed cannot have)
        run = DagRun(run.run_id, run.state, {**run.tasks, PUBLISH_TASK: run.tasks.get(PUBLISH_TASK) or "success"})
    if not pipeline:  # not a tally_daily dataset: the ledger alone speaks for it
        div = first_divergence(dict(hops))
        return Verdict(dataset, Code.LOST if div else Code.OK, (_lost_text(div) if div else "ok")
                       + " (not written by tally_daily)", frozenset(hops))
    current = frozenset(hop for hop, (task, ran) in pipeline if hop in hops and run.tasks.get(task) in ran)
    div = first_divergence({h: e for h, e in hops.items() if h in current})
    stop = next(((hop, task) for hop, (task, ran) in pipeline if run.tasks.get(task) not in ran), None)
    if div:
        after = f"; {_stopped(*stop, run)[1]}" if stop else ""
        return Verdict(dataset, Code.LOST, _lost_text(div) + after, current)
    if stop:
        code, text = _stopped(*stop, run)
        return Verdict(dataset, code, text, current)
    return Verdict(dataset, Code.OK, "ok", current)


def _overall(verdicts: Mapping[str, Verdict]) -> Code:
    codes = {v.code for v in verdicts.values()}
    return next((c for c in (Code.LOST, Code.NOT_LOADED, Code.NOT_PUBLISHED, Code.IN_PROGRESS, Code.NO_RUN)
                 if c in codes), Code.OK)


def _unpublished_text(publication: Publication) -> str:
    why = {False: "gate_warehouse failed", True: "publish has not run"}.get(publication.gate_passed,
                                                                            "gate_warehouse has not run")
    return f"{WHAT_STOPPED[PUBLISHED]}: {why}"


def judge(flow: Mapping[str, Mapping[str, Entry]], run: DagRun | None, ds: str, *,
          airflow_known: bool = True, publication: Publication | None = None,
          stale: Mapping[str, str] | None = None) -> Judgement:
    """Verdicts per dataset for ``ds``: ``flow`` is ``tally.ledger.flow`` ({dataset: {hop: entry}}),
    ``run`` the ds's tally_daily run (None: it has none), ``airflow_known`` False when Airflow could
    not be asked (then the ledger alone speaks, and the headline says so), ``publication`` the
    warehouse's write–audit–publish state of the ds (None: unknown), ``stale`` {raw dataset: why}
    of the inputs the ds was built from that changed since (``tally.lake.state.stale_at``): a ds
    whose hops all agree is then STALE, not OK."""
    judgement = _judge(flow, run, ds, airflow_known=airflow_known, publication=publication)
    if not stale or judgement.code is not Code.OK:
        return judgement
    verdicts = dict(judgement.verdicts)
    for dataset, why in stale.items():
        hops = verdicts[dataset].current if dataset in verdicts else frozenset()
        verdicts[dataset] = Verdict(dataset, Code.STALE, f"stale: {why}", hops)
    first = sorted(stale)[0]
    more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
    return Judgement(f"{judgement.headline}; stale: built before {first}{more} changed: {stale[first]}",
                     Code.STALE, verdicts)


def _judge(flow: Mapping[str, Mapping[str, Entry]], run: DagRun | None, ds: str, *,
           airflow_known: bool, publication: Publication | None) -> Judgement:
    if not airflow_known:
        verdicts = {}
        for dataset, hops in sorted(flow.items()):
            div = first_divergence(dict(hops))
            if not div and publication is not None and publication.staged and "warehouse" in hops:
                verdicts[dataset] = Verdict(dataset, Code.NOT_PUBLISHED, _unpublished_text(publication)
                                            + " (ledger only)", frozenset(hops))
                continue
            verdicts[dataset] = Verdict(dataset, Code.LOST if div else Code.OK,
                                        (_lost_text(div) if div else "ok") + " (ledger only)", frozenset(hops))
        if not verdicts:
            return Judgement(f"no ledger entries for ds {ds}, and the run's state is unknown", Code.NO_RUN, {})
        return Judgement("verdicts from the ledger alone: the run's task states are unknown",
                         _overall(verdicts), verdicts)
    if run is None:
        verdicts = {d: Verdict(d, Code.NO_RUN, f"{DAG_ID} has not run for ds {ds}"
                               + ("; these entries come from elsewhere" if hops else ""), frozenset())
                    for d, hops in sorted(flow.items())}
        return Judgement(f"{DAG_ID} has not run for ds {ds}", Code.NO_RUN, verdicts)
    datasets = sorted({*flow, *contract.RAW_DATASETS, *contract.CURATED})
    verdicts = {d: _judge_dataset(d, flow.get(d, {}), run, publication) for d in datasets}
    code = _overall(verdicts)
    failed = sorted((t for t, s in run.tasks.items() if s == "failed"), key=lambda t: (_rank(t), t))
    headline = f"{DAG_ID} run {run.run_id}: {run.state or 'unknown'}"
    if failed:
        headline += f"; failed: {_names(failed)}"
    if code is Code.OK and run.state == "failed":  # every hop agrees, yet a task failed (a domain check…)
        code = Code.NOT_LOADED
    elif code is Code.OK and run.state in PENDING:
        code = Code.IN_PROGRESS
    return Judgement(headline, code, verdicts)
