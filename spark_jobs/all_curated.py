"""Every curated job for one ds, in dependency order, in ONE Spark application.

    spark-submit spark_jobs/all_curated.py --lake <uri-or-path> --ds YYYY-MM-DD [--reporting-currency USD]

Same outputs as submitting ``conformed_customers``, ``opportunity_enrichment``,
``rep_rankings`` and ``account_engagement`` one after the other, but the JVM and the session
start once, and a dataset's state is built once for the four (about half the work per ds:
``bench/warm_spark.py``). The daily DAG's ``spark_curated`` task submits it. A job's error
names the job (``all_curated: error: opportunity_enrichment: …``).
"""

from __future__ import annotations

import sys
import time

import account_engagement
import conformed_customers
import curated_lib as lib
import opportunity_enrichment
import rep_rankings
from pyspark.sql import SparkSession

from tally.lake.verify import PartitionMismatch

JOB = "all_curated"
JOBS = (conformed_customers, opportunity_enrichment, rep_rankings, account_engagement)


def run(spark: SparkSession, lake_uri: str, ds: str, *, reporting_currency: str | None = None,
        s3=None, rows_per_file: int = lib.ROWS_PER_FILE) -> dict:
    started = time.monotonic()
    results = {}
    for job in JOBS:
        try:
            results[job.JOB] = job.run(spark, lake_uri, ds, reporting_currency=reporting_currency, s3=s3,
                                       rows_per_file=rows_per_file)
        except (lib.JobError, PartitionMismatch) as exc:  # exit 2 (job_main), naming the job
            raise lib.JobError(f"{job.JOB}: {exc}") from exc
    rows: dict[str, int] = {}
    for result in results.values():
        rows.update(result["rows"])
    return {"job": JOB, "ds": ds, "rows": rows, "jobs": results, "seconds": round(time.monotonic() - started, 3),
            "job_seconds": {name: r["seconds"] for name, r in results.items()}}


if __name__ == "__main__":
    sys.exit(lib.job_main(JOB, run, __doc__.split("\n\n")[0]))
