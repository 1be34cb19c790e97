"""Work-arounds for bugs of the Airflow release Tally runs on: each applied only while the
installed Airflow still has the bug (detected from its code, so an Airflow with the fix is left
alone), each naming its upstream issue. ``install()`` runs when Airflow loads Tally's plugin
(``TallyPlugin.on_load``), in every Airflow process that loads plugins.

- **apache/airflow#70368** (3.3.0 and later): clearing a run, or a task of a run, of a DAG with a
  deadline on the run's queued time fails with HTTP 500 (``TypeError: unsupported type for
  timedelta seconds component: dict``). ``tally_daily`` has such a deadline (3 hours after it
  was queued, its ``DeadlineAlert``), so without this on-call could not clear a failed task, and
  ``tally backfill`` could not re-run a failed or completed ds (Airflow clears the run). Since
  3.3.0 the alert's interval is stored as JSON, and ``_recalculate_dagrun_queued_at_deadlines``
  (called by ``clear_task_instances``) passes it raw to ``timedelta``. The replacement decodes it
  the way Airflow's own run creation does (``decode_deadline_alert``), as the upstream fix
  (apache/airflow#70370) does.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime

log = logging.getLogger(__name__)
BUGGY_LINE = "timedelta(seconds=deadline_alert.interval)"


def install() -> list[str]:
    """Apply the work-arounds the installed Airflow needs; the upstream issues applied."""
    from airflow.models import taskinstance

    applied = []
    current = taskinstance._recalculate_dagrun_queued_at_deadlines
    if current is not recalculate_queued_at_deadlines:
        try:
            source = inspect.getsource(current)
        except (OSError, TypeError):
            source = ""
        if BUGGY_LINE in source:
            taskinstance._recalculate_dagrun_queued_at_deadlines = recalculate_queued_at_deadlines
            applied.append("apache/airflow#70368")
    if applied:
        log.debug("tally: Airflow work-arounds applied: %s", ", ".join(applied))
    return applied


def recalculate_queued_at_deadlines(dagrun, new_queued_at: datetime, session) -> None:
    """Airflow's ``_recalculate_dagrun_queued_at_deadlines`` with the interval decoded: the
    unmissed deadlines of ``dagrun`` that count from its queued time move with the new one."""
    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from airflow.serialization.decoders import decode_deadline_alert
    from airflow.serialization.definitions.deadline import DeadlineAlertFields, SerializedVariableInterval
    from airflow.serialization.enums import DagAttributeTypes, Encoding
    from sqlalchemy import false, select

    results = session.execute(
        select(Deadline, DeadlineAlertModel)
        .join(DeadlineAlertModel, Deadline.deadline_alert_id == DeadlineAlertModel.id)
        .where(
            Deadline.dagrun_id == dagrun.id,
            Deadline.missed == false(),
            DeadlineAlertModel.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string()
            == ReferenceModels.DagRunQueuedAtDeadline.__name__,
        )
    ).all()
    for deadline, alert in results:
        decoded = decode_deadline_alert({
            Encoding.TYPE: DagAttributeTypes.DEADLINE_ALERT,
            Encoding.VAR: {DeadlineAlertFields.REFERENCE: alert.reference,
                           DeadlineAlertFields.INTERVAL: alert.interval,
                           DeadlineAlertFields.CALLBACK: alert.callback_def},
        })
        interval = decoded.interval
        if isinstance(interval, SerializedVariableInterval):
            interval = interval.resolve()
        deadline.deadline_time = new_queued_at + interval
    # no flush or commit: the caller's transaction (the scheduler loop, the API request) commits
