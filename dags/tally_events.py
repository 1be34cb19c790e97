"""
### tally_events — land the Kafka activity stream in the lake, every 15 minutes

1. **land**: the consumer group `tally-lake-activity` reads topic `tally.activity` from its
   committed offsets until the topic is drained (or `MAX_MESSAGES` is reached) and lands
   micro-batches in `raw/kafka/activity/ds=<ds>/p<partition>-o<first>-<last>.parquet`.
   Malformed messages (not JSON, missing fields, wrong types) go to
   `quarantine/kafka/activity/ds=<ds>/` with topic, partition, offset, raw value and reason.
   Offsets are committed to Kafka only after a batch's files and `_manifest.json` are written,
   so a failed or retried run re-lands the same offsets under the same names: no duplicates,
   no loss.
2. **record_ledger**: one `ops.ledger` row (dataset `kafka.activity`, hop `raw`) per ds the run
   touched, with the ds's landed rows, key checksum and, in `details`, offsets, quarantined
   count and reasons, and the consumer lag left. The lag is also in the task log. Fails (no
   retry) when more than 5 % of the run's messages were quarantined, so on-call hears of a
   broken producer.

**ds** of an event is the UTC date of its Kafka record timestamp (when it was appended to
the topic), so a late event lands in the ds it arrived in; `occurred_at` is a column.

On-call: a failed `land` is safe to clear and re-run. Quarantined messages:
`quarantine/kafka/activity/ds=<ds>/`; counts per ds: `tally reconcile --ds <ds>` or
`ops.ledger` details. See `docs/sources/kafka.md`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, CronTriggerTimetable, dag, task

from tally import contract  # standard library only: cheap at parse time
from tally.airflow.callback import alert_on_failure  # cheap: loads nothing until a task fails

MAX_MESSAGES = 500_000  # per run: bounds a catch-up run's time; the next run continues
BATCH_SIZE = 20_000  # messages per micro-batch (one commit each)
QUARANTINE_ALERT = 0.05
RAW_EVENTS = Asset(name="raw.kafka.activity", uri="tally://lake/raw/kafka/activity")


@dag(
    dag_id="tally_events",
    description="Land the Kafka activity stream in the lake every 15 minutes, offsets committed after",
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # the landing is single-writer per topic
    dagrun_timeout=timedelta(minutes=14),
    tags=["tally", "kafka", "events"],
    doc_md=__doc__,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=30),
                  "max_retry_delay": timedelta(minutes=5),
                  "on_failure_callback": alert_on_failure},
)
def tally_events():
    @task(outlets=[RAW_EVENTS], retries=3, retry_exponential_backoff=True, max_retry_delay=timedelta(minutes=3))
    def land(run_id=None) -> dict:
        """Read `tally.activity` from the group's committed offsets until drained (at most
        `MAX_MESSAGES`) and land micro-batches in `raw/kafka/activity/ds=<ds>/`, malformed messages in
        the quarantine zone; offsets committed only after a batch is in the lake. Safe to clear."""
        from tally.airflow import tasks

        return tasks.land_events(run_id, MAX_MESSAGES, BATCH_SIZE, contract.EVENTS_TOPIC, contract.EVENTS_GROUP)

    @task
    def record_ledger(report: dict, run_id=None) -> list[str]:
        """One `ops.ledger` row (`kafka.activity`, hop raw) per ds the landing touched, with offsets,
        quarantine counts and the consumer lag left; fails (no retry) when more than 5 % of the run's
        messages were quarantined. On-call: `docs/sources/kafka.md`."""
        from tally.airflow import tasks

        return tasks.record_events_ledger(report, run_id, QUARANTINE_ALERT)

    record_ledger(land())


tally_events()
