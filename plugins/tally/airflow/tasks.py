"""One function per DAG task: resources from the Connections, the core function called by
reference, data problems turned into ``AirflowFailException`` (failed at once, no retries).

The DAG files import this module inside their task bodies only (never at parse time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

from tally import contract
from tally.airflow.connections import alert_config, kafka_bootstrap, resources
from tally.core.errors import DataProblem
from tally.gates import curated as curated_gate
from tally.gates import mart as mart_gate
from tally.gates import raw as raw_gate
from tally.gates import warehouse as warehouse_gate
from tally.load import stage as load_stage
from tally.load import wap
from tally.reconcile import full as reconcile_full
from tally.stages import dbt as dbt_stage
from tally.stages import extract as extract_stage

T = TypeVar("T")
log = logging.getLogger("tally.events")


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a core function; data problems fail the task at once (no retries)."""
    try:
        return fn(*args, **kwargs)
    except DataProblem as exc:
        raise AirflowFailException(str(exc)) from exc


def ds_of(interval_start: datetime) -> str:
    """A run's ds: the date of its data interval's start (UTC), ``YYYY-MM-DD``."""
    return interval_start.strftime("%Y-%m-%d")


def triggering_ds(events: Any = None, interval_start: datetime | None = None, run_after: datetime | None = None) -> str:
    """The ds of an asset-triggered run (``tally_reconcile``): the newest ``ds`` in the extras of
    the asset events that triggered it (``tally_daily``'s ``gate_mart`` sets it); else the run's
    data interval (a run triggered with a logical date); else the day before it was due."""
    from datetime import timedelta

    found = [str(e.extra["ds"]) for evs in (events or {}).values() for e in evs
             if isinstance(getattr(e, "extra", None), dict) and e.extra.get("ds")]
    if found:
        return max(found)
    if interval_start is not None:
        return ds_of(interval_start)
    if run_after is not None:
        return ds_of(run_after - timedelta(days=1))
    raise ValueError("no ds: the run was not triggered by the marts' assets and has no data interval")


# -- tally_daily --------------------------------------------------------------------------------------
def extract(dataset_id: str, ds: str, start: datetime, end: datetime, run_id: str | None,
            backfill: bool = False) -> dict:
    """Land the dataset's interval; in a backfill run (``tally backfill``: conf ``tally_backfill``)
    reuse the day's landed partition, or extract only if that is exact, else fail saying why
    (``tally.backfill.plan.source_for``: the same rule the CLI planned with)."""
    source = dataset_id.split(".")[0]
    if backfill:
        from tally.backfill import plan

        res = resources(run_id)
        decision = plan.source_for(ds, plan.landed(res.lake), plan.utc_today())
        if decision.refused:
            raise AirflowFailException(decision.reason)
        if decision.source == "lake":
            return run(extract_stage.reuse_landed, res, dataset_id, ds)
    return run(extract_stage.extract, resources(run_id, need=(source,)), dataset_id, ds, start, end)


def gate_raw(ds: str, dataset_ids: Iterable[str], run_id: str | None) -> list[dict]:
    return run(raw_gate.gate_raw, resources(run_id), ds, list(dataset_ids))


def drain_events(run_id: str | None, topic: str = contract.EVENTS_TOPIC, group_id: str = contract.EVENTS_GROUP,
                 batch_size: int = 20_000) -> dict:
    """Land what the topic holds now into the lake and the ledger (the daily DAG, before the
    engagement job); without a ``tally_kafka`` Connection or the topic there is nothing to do."""
    import psycopg

    from tally.sources.kafka import KafkaSource

    try:
        bootstrap = kafka_bootstrap()
    except AirflowNotFoundException:
        return {"topic": topic, "skipped": "no tally_kafka connection"}
    source = KafkaSource(bootstrap, topic, group_id, batch_size=batch_size)
    if not source.topic_exists():
        return {"topic": topic, "skipped": "topic does not exist"}
    res = resources(run_id)
    report = source.land(res.lake)
    with psycopg.connect(res.warehouse.conninfo(), autocommit=True) as conn:
        source.record_ledger(conn, res.lake, report)
    return {k: report[k] for k in ("topic", "messages", "landed", "quarantined")}


def gate_curated(ds: str, run_id: str | None) -> list[dict]:
    return run(curated_gate.gate_curated, resources(run_id), ds)


def load(ds: str, run_id: str | None) -> list[dict]:
    return run(load_stage.load, resources(run_id), ds)


def gate_warehouse(ds: str, run_id: str | None) -> list[dict]:
    return run(warehouse_gate.gate_warehouse, resources(run_id), ds)


def publish(ds: str, run_id: str | None) -> dict:
    return run(wap.publish, resources(run_id), ds)


def dbt_build(ds: str, run_id: str | None) -> None:
    run(dbt_stage.dbt_build, resources(run_id), ds)


def gate_mart(ds: str, run_id: str | None) -> list[dict]:
    return run(mart_gate.gate_mart, resources(run_id), ds)


# -- tally_maintenance --------------------------------------------------------------------------------
def compact_raw(run_id: str | None) -> list[dict]:
    """``tally.lake.compact.run`` on the lake; a partition that does not match its commit record
    fails the task (after the others ran), naming it."""
    from dataclasses import asdict

    from tally.lake import compact

    done = compact.run(resources(run_id).lake)
    refused = [c for c in done if c.action == "refused"]
    for c in done:
        if c.action in ("compacted", "refused"):
            log.info("%s ds=%s: %s, %s -> %s files %s", c.dataset, c.ds, c.action, c.files_before, c.files_after,
                     c.reason or "")

    def check() -> None:
        if refused:
            raise DataProblem("; ".join(f"{c.dataset} ds={c.ds}: {c.reason}" for c in refused))

    run(check)
    return [asdict(c) for c in done if c.action != "skip"]


def prune_lake(run_id: str | None) -> list[dict]:
    """``tally.lake.retention``: plan, then apply; each removed partition in the log."""
    from dataclasses import asdict

    from tally.lake import retention

    lake = resources(run_id).lake
    removed = retention.apply(lake, retention.plan(lake))
    for p in removed:
        log.info("pruned %s ds=%s: %s", p.dataset, p.ds, p.reason)
    return [asdict(p) for p in removed]


# -- tally_events -------------------------------------------------------------------------------------
def land_events(run_id: str | None, max_messages: int, batch_size: int, topic: str = contract.EVENTS_TOPIC,
                group_id: str = contract.EVENTS_GROUP) -> dict:
    """Land the topic from the group's committed offsets (at most ``max_messages``); the report."""
    from tally.sources.kafka import KafkaSource
    from tally.sources.kafka.ledger import format_lag

    source = KafkaSource(kafka_bootstrap(), topic, group_id, batch_size=batch_size)
    report = source.land(resources(run_id).lake, max_messages=max_messages)
    log.info("%s: %d messages, %d landed, %d quarantined %s; ds %s", topic, report["messages"],
             report["landed"], report["quarantined"], report["reasons"], sorted(report["ds"]))
    log.info("%s", format_lag(report))
    return report


def record_events_ledger(report: dict, run_id: str | None, quarantine_limit: float) -> list[str]:
    """The ledger's rows for every ds a landing touched; fails (no retry) when more than
    ``quarantine_limit`` of its messages were quarantined. The ds recorded."""
    import psycopg

    from tally.sources.kafka.ledger import format_lag, record_ledger

    res = resources(run_id)
    with psycopg.connect(res.warehouse.conninfo(), autocommit=True) as conn:
        entries = record_ledger(conn, res.lake, report)
    log.info("ledger: %s; %s", [(e.ds, e.row_count) for e in entries], format_lag(report))

    def check() -> None:
        if report["messages"] and report["quarantined"] / report["messages"] > quarantine_limit:
            raise DataProblem(f"{report['topic']}: {report['quarantined']} of {report['messages']} messages "
                              f"quarantined ({report['reasons']}); see quarantine/kafka/activity/")

    run(check)
    return [e.ds for e in entries]


# -- tally_reconcile ----------------------------------------------------------------------------------
def reconcile_table(dataset_id: str, run_id: str | None) -> dict:
    return run(reconcile_full.table, resources(run_id, need=("erp",)), dataset_id)


def reconcile_check(ds: str, reports: list[dict], run_id: str | None, dag_id: str, task_id: str) -> dict:
    """Record and alert (through the ``tally_alert_*`` Connections) what the tables' runs found."""
    return run(reconcile_full.check, resources(run_id, need=("erp",)), ds, reports, dag_id=dag_id, task_id=task_id,
               alert_config=alert_config())
