"""curated/conformed_customers: each live ERP customer resolved to its Salesforce Account.

    spark-submit spark_jobs/conformed_customers.py --lake <uri-or-path> --ds YYYY-MM-DD

ERP users type the account reference by hand: 18-char, 15-char, wrong case, or nothing. Each
live customer (latest version, tombstones removed) gets ``account_id`` (the live 18-char Account
Id, NULL if unresolved) and ``resolution`` in exact / case_fixed / expanded_15 / missing_ref /
unknown_account. Nothing is dropped: unresolved customers are rows with ``is_resolved = false``,
and the manifest counts them (``resolution_counts``, ``unresolved``).
"""

from __future__ import annotations

import sys
import time

import curated_lib as lib
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

JOB = "conformed_customers"
OUTPUT = "conformed_customers"
RESOLUTIONS = ("exact", "case_fixed", "expanded_15", "missing_ref", "unknown_account")


def build(customers: DataFrame, accounts: DataFrame) -> DataFrame:
    resolved = lib.resolve_reference(
        customers, "sf_account_ref", accounts.select(F.col("Id").alias("id")), "account_id", "_how"
    )
    return resolved.select(
        F.col("customer_id").cast("long").alias("customer_id"),
        F.col("name").alias("customer_name"),
        F.col("country"),
        F.col("sf_account_ref"),
        F.col("account_id"),
        F.when(F.col("_how") == "unknown", "unknown_account").otherwise(F.col("_how")).alias("resolution"),
        F.col("account_id").isNotNull().alias("is_resolved"),
    )


def run(spark: SparkSession, lake_uri: str, ds: str, *, reporting_currency: str | None = None,
        s3=None, rows_per_file: int = lib.ROWS_PER_FILE) -> dict:
    """Build and commit curated/conformed_customers for ``ds``; return the summary."""
    started = time.monotonic()
    lake = lib.open_lake(spark, lake_uri, ds, s3)
    inputs: dict[str, list[str]] = {}
    customers = lib.live(spark, lake, "erp.customers", ds, inputs)
    accounts = lib.live(spark, lake, "salesforce.Account", ds, inputs)
    manifest = lib.write_curated(lake, build(customers, accounts), OUTPUT, ds, inputs, rows_per_file=rows_per_file,
                                 counts={"resolution_counts": lib.counts_of("resolution", RESOLUTIONS),
                                         "": {"unresolved": lib.count_if(~F.col("is_resolved"))}})
    counts, unresolved = manifest["resolution_counts"], manifest["unresolved"]
    return lib.summary(JOB, ds, lake, {OUTPUT: manifest}, started,
                       resolution_counts=counts, unresolved=unresolved)


if __name__ == "__main__":
    sys.exit(lib.job_main(JOB, run, __doc__.split("\n\n")[0]))
