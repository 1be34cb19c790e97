"""The ``on_failure_callback`` of Tally's DAGs: cheap to import when a DAG file is parsed.

    from tally.alerts.callback import alert_on_failure

    @dag(..., default_args={..., "on_failure_callback": alert_on_failure})

Airflow runs a task's failure callback in the task's process once the task has failed for good:
after its last retry, or at once for ``AirflowFailException`` (a data problem). Retries run
``on_retry_callback`` instead, so a flaky extract that recovers pages nobody. This module imports
nothing heavy: the work (Connections, the warehouse, the channels) is loaded only when a task
fails, by ``tally.airflow_adapter.raise_failure_alert``. Whatever goes wrong while alerting is
logged and swallowed: the task's own failure is what Airflow must record.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tally.alerts")


def alert_on_failure(context: Any) -> None:
    """Raise (at most once per DAG, ds and gate or task) the on-call alert for a failed task."""
    try:
        from tally.airflow_adapter import raise_failure_alert

        raise_failure_alert(context)
    except Exception:
        log.exception("could not raise the on-call alert; the task's own failure stands")
