"""
### tally_maintenance — keep the lake bounded, every day at 06:00 UTC

1. **compact_raw**: every raw partition at least 2 days old that holds many or small files is
   rewritten into as few files as possible (`tally.lake.compact`): rows and key checksum are
   verified against its commit record before the new manifest is committed, and its commit
   identity is kept, so the state zone built on it stays valid. The Kafka activity partitions are
   skipped (their per-file offset ranges keep replays idempotent). A partition that does not
   match its commit record is left alone and fails the task (a data problem: no retry), naming it.
2. **prune**: the retention policy (`tally.lake.retention`): raw and quarantine kept forever;
   the state and curated zones keep their newest 35 ds and every month's last ds (the state zone
   also its newest valid state). A later run that needs a pruned state rebuilds from the newest
   valid one.

The same by hand: `tally lake compact --dry-run`, `tally lake prune --dry-run` (`docs/lake.md`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from tally.airflow.callback import alert_on_failure  # cheap: loads nothing until a task fails


@dag(
    dag_id="tally_maintenance",
    description="Compact small raw partitions and prune the state and curated zones by the retention policy",
    schedule=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    tags=["tally", "lake", "maintenance"],
    doc_md=__doc__,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=1),
                  "max_retry_delay": timedelta(minutes=10), "on_failure_callback": alert_on_failure},
)
def tally_maintenance():
    @task(show_return_value_in_logs=False)
    def compact_raw(run_id=None) -> list[dict]:
        """Compact the raw partitions at least 2 days old that hold many or small files (Kafka
        skipped); fails naming any partition that does not match its commit record. On-call:
        `docs/lake.md`."""
        from tally.airflow import tasks

        return tasks.compact_raw(run_id)

    @task(show_return_value_in_logs=False)
    def prune(run_id=None) -> list[dict]:
        """Remove the state and curated partitions the retention policy no longer keeps (raw and
        quarantine never). On-call: `docs/lake.md`."""
        from tally.airflow import tasks

        return tasks.prune_lake(run_id)

    compact_raw() >> prune()


tally_maintenance()
