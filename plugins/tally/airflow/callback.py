"""The ``on_failure_callback`` of Tally's DAGs: cheap to import when a DAG file is parsed.

    from tally.airflow.callback import alert_on_failure

    @dag(..., default_args={..., "on_failure_callback": alert_on_failure})

Airflow runs a task's failure callback in the task's process once the task has failed for good:
after its last retry, or at once for ``AirflowFailException`` (a data problem). Retries run
``on_retry_callback`` instead, so a flaky extract that recovers pages nobody. This module imports
nothing heavy at the top: the work (Connections, the warehouse, the channels) is loaded only when
a task fails, by :func:`raise_failure_alert`. Whatever goes wrong while alerting is logged and
swallowed: the task's own failure is what Airflow must record.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tally.alerts")


def alert_on_failure(context: Any) -> None:
    """Raise (at most once per DAG, ds and gate or task) the on-call alert for a failed task."""
    try:
        raise_failure_alert(context)
    except Exception:
        log.exception("could not raise the on-call alert; the task's own failure stands")


def _context_ds(context: Any) -> str:
    from datetime import UTC, datetime

    from tally.airflow.tasks import ds_of

    for key in ("data_interval_start", "logical_date"):  # the DAGs' ds is the interval's start date
        value = context.get(key)
        if value is not None:
            return ds_of(value)
    if context.get("ds"):
        return str(context["ds"])
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return ds_of(run_after or datetime.now(UTC))


def raise_failure_alert(context: Any, config=None, warehouse_conninfo: str | None = None):
    """The work behind :func:`alert_on_failure`: build the alert from a failed task's context (a
    gate alert when ``context["exception"]`` was raised from a ``DataProblem`` carrying gate
    results, else a task alert with the error) and raise it once per (dag, ds, gate or task); the
    raw gate raises one per failed dataset (``tally.alerts.model.failure_alerts``). Returns the
    ``tally.alerts.dispatch.Outcome``s."""
    from tally.airflow.connections import alert_config
    from tally.alerts.dispatch import raise_alert
    from tally.alerts.model import failure_alerts

    config = config or alert_config()
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown"
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None) or "unknown"
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # the property reads Airflow's config
        log_url = None
    secrets = list(config.secrets())
    if warehouse_conninfo is None:
        warehouse_conninfo = _warehouse_conninfo(secrets)
    alerts = failure_alerts(
        dag_id, _context_ds(context), task_id, context.get("exception"),
        run_id=context.get("run_id") or getattr(ti, "run_id", None), try_number=getattr(ti, "try_number", None),
        log_url=log_url, data_docs_url=config.data_docs_url, runbook_url=config.runbook_url,
        secrets=[s for s in secrets if s],
    )
    return [raise_alert(alert, config, warehouse_conninfo) for alert in alerts]


async def deadline_missed(context: dict, within: str = "") -> None:
    """The ``DeadlineAlert`` callback of ``tally_daily`` (run by Airflow's triggerer when a run has
    not finished in time): one on-call alert per (DAG, ds), category ``deadline_missed``."""
    import asyncio

    try:
        await asyncio.to_thread(raise_deadline_alert, context, within)
    except Exception:
        log.exception("could not raise the deadline alert")


def raise_deadline_alert(context: dict, within: str = "", config=None, warehouse_conninfo: str | None = None):
    """The work behind :func:`deadline_missed`. ``context`` is what Airflow hands a deadline
    callback: ``{"dag_run": <the run as the REST API shows it>, "deadline": {"deadline_time": …}}``.
    Returns the ``tally.alerts.dispatch.Outcome``."""
    from tally.airflow.connections import alert_config
    from tally.alerts.dispatch import raise_alert
    from tally.alerts.model import DEADLINE_TASK, task_alert

    run = context.get("dag_run") or {}
    dag_id, run_id = run.get("dag_id") or "unknown", run.get("dag_run_id") or run.get("run_id")
    ds = _run_ds(run)
    deadline = (context.get("deadline") or {}).get("deadline_time")
    state = run.get("state") or "unknown"
    message = (f"{dag_id} ds={ds} had not finished {within or 'in time'} (deadline {deadline}); "
               f"run {run_id} is {state}")
    config = config or alert_config()
    secrets = list(config.secrets())
    if warehouse_conninfo is None:
        warehouse_conninfo = _warehouse_conninfo(secrets)
    alert = task_alert(dag_id, ds, DEADLINE_TASK, message, run_id=run_id, data_docs_url=config.data_docs_url,
                       runbook_url=config.runbook_url, secrets=[s for s in secrets if s])
    alert.title = f"Run missed its deadline: {dag_id} ds={ds}"
    alert.summary = message
    return raise_alert(alert, config, warehouse_conninfo)


def _run_ds(run: dict) -> str:
    """The ds of a run as the REST API shows it: its data interval's start date (else its logical
    date, else when it was due)."""
    from tally.core.dates import parse_instant

    for key in ("data_interval_start", "logical_date", "run_after"):
        if run.get(key):
            return parse_instant(str(run[key]), key).date().isoformat()
    return "unknown"


def _warehouse_conninfo(secrets: list[str]) -> str | None:
    """The ``tally_warehouse`` Connection's conninfo (its password added to ``secrets``, kept out of
    every message), or None without that Connection: the alert is then sent without recording."""
    from tally.airflow.connections import WAREHOUSE_CONN, postgres

    try:
        warehouse = postgres(WAREHOUSE_CONN)
    except Exception:
        return None
    secrets.append(warehouse.password)
    return warehouse.conninfo()
