"""curated/account_engagement: product usage and open pipeline per live account.

    spark-submit spark_jobs/account_engagement.py --lake <uri-or-path> --ds YYYY-MM-DD

Reads the activity events of every committed ds ``<= --ds`` of raw/kafka/activity, the live
Salesforce accounts and the committed curated/opportunities of ``--ds`` (run
``opportunity_enrichment`` first), and writes one row per live account:

- ``events_total`` and ``last_event_at`` over all its events;
- over the 30 days ending with ds (``occurred_at`` in ``[ds + 1 - 30 days, ds + 1)``):
  ``events_30d``, ``distinct_users_30d`` and one count per event type;
- ``open_opportunities`` (live, not closed) and ``open_pipeline_reporting`` (their amount in
  the reporting currency).

This is the heavy join of the platform (every event of every day), so events are reduced to
one row per account before the join. An event delivered twice (same ``event_id`` at another
offset) counts once; events of accounts that are not live are counted in the manifest.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta

import curated_lib as lib
from pyspark.sql import DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

JOB = "account_engagement"
OUTPUT = "account_engagement"
WINDOW_DAYS = 30
TYPE_COLUMNS = {"page_view": "page_views_30d", "feature_used": "feature_used_30d", "login": "logins_30d",
                "email_open": "email_opens_30d"}


def window_of(ds: str) -> tuple[datetime, datetime]:
    """``[ds + 1 - 30 days, ds + 1)`` in UTC."""
    end = datetime.combine(date.fromisoformat(ds) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return end - timedelta(days=WINDOW_DAYS), end


DELIVERY_ORDER = ("_kafka_partition", "_kafka_offset", "account_id", "event_type", "user_email", "occurred_at")


def distinct_events(events: DataFrame) -> DataFrame:
    """One row per event_id: the first delivery (lowest partition, then offset), with
    ``_deliveries``, how many times it was read.

    A window rather than ``min(struct(...))``: that aggregate cannot hash, so Spark sorted every
    event twice, before and after the shuffle, and almost every event is delivered once."""
    first = Window.partitionBy("event_id").orderBy(*[F.col(c).asc_nulls_first() for c in DELIVERY_ORDER])
    every = first.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (
        events.select("event_id", *DELIVERY_ORDER[2:], F.row_number().over(first).alias("_rn"),
                      F.count(F.lit(1)).over(every).alias("_deliveries"))
        .filter(F.col("_rn") == 1)
        .drop("_rn")
    )


def per_account(events: DataFrame, ds: str) -> DataFrame:
    start, end = window_of(ds)
    recent = (F.col("occurred_at") >= F.lit(start)) & (F.col("occurred_at") < F.lit(end))
    return events.groupBy("account_id").agg(
        F.count(F.lit(1)).alias("events_total"),
        F.sum("_deliveries").alias("_deliveries"),
        F.count(F.when(recent, 1)).alias("events_30d"),
        F.countDistinct(F.when(recent, F.col("user_email"))).alias("distinct_users_30d"),
        F.max("occurred_at").alias("last_event_at"),
        *[F.count(F.when(recent & (F.col("event_type") == t), 1)).alias(c) for t, c in TYPE_COLUMNS.items()],
    )


def build(accounts: DataFrame, events: DataFrame, opportunities: DataFrame, ds: str,
          observation: Observation | None = None) -> DataFrame:
    """The output rows; ``events`` as ``distinct_events`` returns them. ``observation``, if given,
    measures the events: ``events_read``, ``events_distinct`` and ``events_matched`` (those of a
    live account)."""
    usage = per_account(events, ds)
    pipeline = (
        opportunities.filter(~F.coalesce(F.col("is_closed"), F.lit(False)) & F.col("account_id").isNotNull())
        .groupBy("account_id")
        .agg(F.count(F.lit(1)).alias("open_opportunities"), F.sum("amount_reporting").alias("open_pipeline"))
    )
    live = accounts.select(F.col("Id").alias("_live_id"), F.col("Name").alias("account_name"))
    # A full join keeps the events of accounts that are not live until they are counted. The
    # counts sit above the join, where an empty side (no events, no accounts) cannot prune them.
    every = live.join(usage, F.col("_live_id") == F.col("account_id"), "full")
    if observation is not None:
        every = every.observe(
            observation,
            F.coalesce(F.sum("_deliveries"), F.lit(0)).alias("events_read"),
            F.coalesce(F.sum("events_total"), F.lit(0)).alias("events_distinct"),
            F.coalesce(F.sum(F.when(F.col("_live_id").isNotNull(), F.col("events_total"))), F.lit(0))
            .alias("events_matched"),
        )
    joined = (
        every.filter(F.col("_live_id").isNotNull())
        .drop("account_id").withColumnRenamed("_live_id", "account_id")
        .join(pipeline, "account_id", "left")
    )
    zero = F.lit(0).cast("long")
    counts = ["events_total", "events_30d", "distinct_users_30d"]
    return joined.select(
        "account_id",
        "account_name",
        *[F.coalesce(F.col(c), zero).cast("long").alias(c) for c in counts],
        "last_event_at",
        *[F.coalesce(F.col(c), zero).cast("long").alias(c) for c in TYPE_COLUMNS.values()],
        F.coalesce(F.col("open_opportunities"), zero).cast("long").alias("open_opportunities"),
        F.coalesce(F.col("open_pipeline"), F.lit(0)).cast(lib.MONEY).alias("open_pipeline_reporting"),
    )


def run(spark: SparkSession, lake_uri: str, ds: str, *, reporting_currency: str | None = None,
        s3=None, rows_per_file: int = lib.ROWS_PER_FILE) -> dict:
    """Build and commit curated/account_engagement for ``ds``; return the summary."""
    started = time.monotonic()
    lake = lib.open_lake(spark, lake_uri, ds, s3)
    inputs: dict[str, list[str]] = {}
    accounts = lib.live(spark, lake, "salesforce.Account", ds, inputs)
    opportunities = lib.read_curated(spark, lake, "opportunities", ds, inputs)
    raw_events = lib.read_events(spark, lake, ds, inputs)
    # The events are read once: their counts are measured while the output is written.
    events = Observation(f"events_{time.monotonic_ns()}")
    counts: dict[str, int] = {}

    def with_event_counts(extra: dict) -> dict:
        measured = {k: int(v) for k, v in lib.observed(events, "the events of account_engagement").items()}
        read, distinct, matched = measured["events_read"], measured["events_distinct"], measured["events_matched"]
        counts.update({"events_read": read, "duplicate_events": read - distinct, "events_distinct": distinct,
                       "events_matched": matched, "events_unmatched_account": distinct - matched})
        return {**extra, "events": dict(counts)}

    manifest = lib.write_curated(lake, build(accounts, distinct_events(raw_events), opportunities, ds, events), OUTPUT,
                                 ds, inputs, {"window_days": WINDOW_DAYS}, rows_per_file, derive=with_event_counts)
    return lib.summary(JOB, ds, lake, {OUTPUT: manifest}, started, events=counts)


if __name__ == "__main__":
    sys.exit(lib.job_main(JOB, run, __doc__.split("\n\n")[0]))
