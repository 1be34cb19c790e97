"""curated/rep_rankings: each owner's business per quarter, ranked within region and quarter.

    spark-submit spark_jobs/rep_rankings.py --lake <uri-or-path> --ds YYYY-MM-DD

Reads the committed curated/opportunities of ``--ds`` (run ``opportunity_enrichment`` first)
and writes one row per (owner, quarter of close_date) with at least one live opportunity:
counts, won amount and open pipeline in the reporting currency, win rate, and

- ``percent_rank`` = ``PERCENT_RANK() OVER (PARTITION BY region, quarter ORDER BY won_amount)``
- ``dense_rank``   = ``DENSE_RANK()   OVER (PARTITION BY region, quarter ORDER BY won_amount DESC)``

with PostgreSQL's NULL ordering (ascending: NULLS LAST; descending: NULLS FIRST), which is not
Spark's default, so a warehouse query over the same rows gives the same ranks. Opportunities
without an owner or a close date cannot be ranked: they are counted in the manifest
(``skipped``), not silently dropped.
"""

from __future__ import annotations

import sys
import time

import curated_lib as lib
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from tally import contract

JOB = "rep_rankings"
OUTPUT = "rep_rankings"
# open pipeline: not closed, probability in this range (inclusive), non-zero amount (defined once)
OPEN_PROBABILITY = contract.OPEN_PIPELINE_PROBABILITY
RANKING_INPUTS = ("owner_id", "owner_name", "region", "close_date", "is_won", "is_closed", "probability", "amount",
                  "amount_reporting")


def build_rep_rankings(opportunities: DataFrame) -> DataFrame:
    """Per (owner, quarter) totals and ranks; ``opportunities`` as in curated/opportunities."""
    won = F.coalesce(F.col("is_won"), F.lit(False))
    closed = F.coalesce(F.col("is_closed"), F.lit(False))
    nonzero = F.coalesce(F.col("amount") != 0, F.lit(False))
    lo, hi = OPEN_PROBABILITY
    open_ = ~closed & F.col("probability").between(lo, hi) & nonzero
    # Grouped first by owner, quarter AND the owner's name and region: strings as grouping keys
    # keep Spark's hash aggregation (max() of a string is a sort aggregation, 6 s of 8 at 5M
    # rows). The few resulting rows are then merged per (owner, quarter), the strings taken
    # with max(), exactly as one max() over the opportunities would.
    quarter_start = F.trunc("close_date", "quarter").alias("_quarter_start")  # named 'YYYY-Qn' per group below
    partial = (
        opportunities.filter(F.col("owner_id").isNotNull() & F.col("close_date").isNotNull())
        .groupBy("owner_id", quarter_start, "owner_name", "region")
        .agg(
            F.count(F.lit(1)).alias("opportunity_count"),
            F.count(F.when(won, 1)).alias("won_count"),
            F.count(F.when(closed, 1)).alias("closed_count"),
            F.sum(F.when(won & nonzero, F.col("amount_reporting"))).alias("won_amount"),
            F.sum(F.when(open_, F.col("amount_reporting"))).alias("open_pipeline"),
        )
    )
    per_owner = partial.groupBy("owner_id", "_quarter_start").agg(
        F.max("owner_name").alias("owner_name"),
        F.max("region").alias("region"),
        *[F.sum(c).alias(c) for c in ("opportunity_count", "won_count", "closed_count", "won_amount",
                                       "open_pipeline")],
    )
    per_owner = per_owner.withColumn("quarter", lib.quarter_of("_quarter_start"))
    by_region = Window.partitionBy("region", "quarter")
    return per_owner.select(
        F.concat_ws(":", "owner_id", "quarter").alias("ranking_id"),
        "owner_id",
        "owner_name",
        "region",
        "quarter",
        F.col("opportunity_count").cast("long").alias("opportunity_count"),
        F.col("won_count").cast("long").alias("won_count"),
        F.col("closed_count").cast("long").alias("closed_count"),
        F.col("won_amount").cast(lib.MONEY).alias("won_amount"),
        F.coalesce(F.col("open_pipeline"), F.lit(0)).cast(lib.MONEY).alias("open_pipeline"),
        F.when(F.col("closed_count") > 0, F.col("won_count") / F.col("closed_count")).alias("win_rate"),
        F.percent_rank().over(by_region.orderBy(F.col("won_amount").asc_nulls_last())).alias("percent_rank"),
        F.dense_rank().over(by_region.orderBy(F.col("won_amount").desc_nulls_first())).alias("dense_rank"),
    )


def run(spark: SparkSession, lake_uri: str, ds: str, *, reporting_currency: str | None = None,
        s3=None, rows_per_file: int = lib.ROWS_PER_FILE) -> dict:
    """Build and commit curated/rep_rankings for ``ds``; return the summary."""
    started = time.monotonic()
    lake = lib.open_lake(spark, lake_uri, ds, s3)
    inputs: dict[str, list[str]] = {}
    opportunities = lib.read_curated(spark, lake, "opportunities", ds, inputs).select(*RANKING_INPUTS)
    source = lake.read_manifest(lib.curated_path("opportunities"), ds) or {}
    currency = source.get("reporting_currency")
    if reporting_currency and currency and lib.reporting_currency(reporting_currency) != currency:
        raise lib.JobError(f"curated.opportunities ds={ds} is in {currency}, not {reporting_currency}: "
                           "re-run opportunity_enrichment with the same --reporting-currency")
    # Counted while opportunity_enrichment wrote them; a manifest from before it did: one pass.
    skipped = source.get("unrankable")
    if skipped is None:
        skipped = opportunities.agg(*[c.alias(k) for k, c in lib.unrankable_counts().items()]).first().asDict()
    skipped = {k: int(v) for k, v in skipped.items()}
    manifest = lib.write_curated(lake, build_rep_rankings(opportunities), OUTPUT, ds, inputs,
                                 {"skipped": skipped, "reporting_currency": currency}, rows_per_file)
    return lib.summary(JOB, ds, lake, {OUTPUT: manifest}, started, skipped=skipped)


if __name__ == "__main__":
    sys.exit(lib.job_main(JOB, run, __doc__.split("\n\n")[0]))
