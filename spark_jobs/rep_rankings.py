"""Curated opportunities and sales-rep rankings from the raw Salesforce zone.

    spark-submit spark_jobs/rep_rankings.py --lake <uri-or-path> --ds YYYY-MM-DD [--master ...]

Reads every committed ds ``<= --ds`` of raw/salesforce/{User,Account,Opportunity} (exactly
the files each manifest lists), keeps the latest version of each record (greatest
SystemModstamp, ties to the greatest ds), drops deleted records, and writes

- ``curated/opportunities/ds=<ds>/``: one row per live opportunity, with account and owner
  (left joins: a missing account or owner leaves nulls, the opportunity is kept);
- ``curated/rep_rankings/ds=<ds>/``: one row per live user, with won / closed / open totals
  and ``PERCENT_RANK() OVER (PARTITION BY region ORDER BY won_amount)``.

Each output ds is replaced idempotently: uncommitted (manifest removed) and cleared first,
written by Spark, then committed by a manifest with row count, key checksum, schema
fingerprint and inputs. One JSON summary line goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

try:
    import tally  # noqa: F401
except ImportError:  # a checkout run without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

import pyarrow.fs as pafs  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pyspark.sql import DataFrame, SparkSession, Window  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from tally import catalog  # noqa: E402
from tally.lake import MANIFEST, Lake, S3Options, schema_fingerprint  # noqa: E402
from tally.spark_session import build_session, has_class, spark_count_and_checksum  # noqa: E402

JOB = "rep_rankings"
S3A_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"
S3A_MISSING = (
    "Spark cannot read s3a:// without hadoop-aws on its classpath; use a local lake or a Spark "
    "with hadoop-aws (EMR, the compose image)"
)
ROWS_PER_FILE = 1_000_000

OPPORTUNITIES = "curated/opportunities"
REP_RANKINGS = "curated/rep_rankings"

SPARK_TYPES: dict[str, T.DataType] = {
    "id": T.StringType(),
    "string": T.StringType(),
    "bool": T.BooleanType(),
    "int": T.LongType(),
    "decimal": T.DecimalType(38, 9),
    "double": T.DoubleType(),
    "date": T.DateType(),
    "datetime": T.TimestampType(),
}

MONEY = T.DecimalType(38, 9)


class JobError(RuntimeError):
    """A failure with a message meant for the operator (printed without a traceback)."""


def spark_schema(dataset: catalog.Dataset) -> T.StructType:
    return T.StructType([T.StructField(f.name, SPARK_TYPES[f.type], True) for f in dataset.fields])


def is_s3(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in ("s3", "s3a") if "://" in uri else False


def s3_options_from_env() -> S3Options:
    import os

    return S3Options(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def s3a_conf(s3: S3Options) -> dict[str, str]:
    """Hadoop s3a settings matching the lake's S3 options (MinIO / moto need path style)."""
    conf: dict[str, str] = {}
    if s3.endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = s3.endpoint_url
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(s3.endpoint_url.startswith("https")).lower()
    if s3.access_key and s3.secret_key:
        conf["spark.hadoop.fs.s3a.access.key"] = s3.access_key
        conf["spark.hadoop.fs.s3a.secret.key"] = s3.secret_key
    conf["spark.hadoop.fs.s3a.endpoint.region"] = s3.region
    return conf


def check_s3a(spark: SparkSession, lake_uri: str) -> None:
    if is_s3(lake_uri) and not has_class(spark, S3A_CLASS):
        raise JobError(S3A_MISSING)


# -- reading -------------------------------------------------------------------------------
def read_raw(
    spark: SparkSession, lake: Lake, dataset: catalog.Dataset, ds: str
) -> tuple[DataFrame, list[str]]:
    """All committed partitions ``<= ds`` of a raw dataset, by the manifests' file lists,
    with the partition's ``ds`` as a column. Returns (frame, ds values read)."""
    schema = spark_schema(dataset)
    parts = lake.committed(dataset.lake_path, up_to=ds)
    urls: list[str] = []
    for part_ds in parts:
        manifest = lake.read_manifest(dataset.lake_path, part_ds)
        if manifest is None:  # uncommitted between listing and reading
            raise JobError(f"{dataset.dataset_id} ds={part_ds} lost its manifest while the job ran")
        urls += [lake.url(Lake.partition(dataset.lake_path, part_ds), f) for f in manifest["files"]]
    if not urls:
        empty = spark.createDataFrame([], schema)
        return empty.withColumn("ds", F.lit(None).cast("string")).withColumn("_file", F.lit("")), parts
    frame = spark.read.schema(schema).parquet(*urls)
    file_path = F.col("_metadata.file_path")
    frame = frame.select(
        *[F.col(f"`{c}`") for c in schema.fieldNames()],
        F.regexp_extract(file_path, r"/ds=([^/]+)/[^/]+$", 1).alias("ds"),
        file_path.alias("_file"),
    )
    return frame, parts


def latest_live(frame: DataFrame, dataset: catalog.Dataset) -> DataFrame:
    """Latest version per key (greatest cursor, then greatest ds); deleted records dropped."""
    order = [F.col(dataset.cursor).desc_nulls_last(), F.col("ds").desc(), F.col("_file").desc()]
    w = Window.partitionBy(dataset.key).orderBy(*order)
    latest = frame.withColumn("_rn", F.row_number().over(w)).filter(F.col("_rn") == 1)
    if dataset.deleted_flag:
        latest = latest.filter(~F.coalesce(F.col(dataset.deleted_flag), F.lit(False)))
    return latest.drop("_rn", "_file")


# -- transforming --------------------------------------------------------------------------
def build_opportunities(opps: DataFrame, accounts: DataFrame, users: DataFrame) -> DataFrame:
    o, a, u = opps.alias("o"), accounts.alias("a"), users.alias("u")
    return (
        o.join(a, F.col("o.AccountId") == F.col("a.Id"), "left")
        .join(u, F.col("o.OwnerId") == F.col("u.Id"), "left")
        .select(
            F.col("o.Id").alias("opportunity_id"),
            F.col("o.Name").alias("opportunity_name"),
            F.col("o.AccountId").alias("account_id"),
            F.col("a.Name").alias("account_name"),
            F.col("a.BillingCountry").alias("billing_country"),
            F.col("o.OwnerId").alias("owner_id"),
            F.col("u.Name").alias("owner_name"),
            F.col("u.Region__c").alias("region"),
            F.col("o.StageName").alias("stage_name"),
            F.col("o.Amount").cast(MONEY).alias("amount"),
            F.col("o.Probability").cast("double").alias("probability"),
            F.col("o.CloseDate").alias("close_date"),
            F.col("o.IsClosed").alias("is_closed"),
            F.col("o.IsWon").alias("is_won"),
            F.col("o.CreatedDate").alias("created_date"),
            F.col("o.SystemModstamp").alias("system_modstamp"),
        )
    )


def build_rep_rankings(opportunities: DataFrame, users: DataFrame) -> DataFrame:
    won = F.coalesce(F.col("is_won"), F.lit(False))
    closed = F.coalesce(F.col("is_closed"), F.lit(False))
    zero = F.lit(0).cast(MONEY)
    per_owner = opportunities.groupBy("owner_id").agg(
        F.sum(F.when(won, F.col("amount"))).alias("won_amount"),
        F.count(F.when(won, 1)).alias("won_count"),
        F.count(F.when(closed, 1)).alias("closed_count"),
        F.sum(F.when(~closed, F.col("amount"))).alias("open_pipeline"),
        F.count(F.lit(1)).alias("opportunity_count"),
    )
    reps = users.select(
        F.col("Id").alias("owner_id"), F.col("Name").alias("owner_name"), F.col("Region__c").alias("region")
    )
    joined = reps.join(per_owner, "owner_id", "left").select(
        "owner_id",
        "owner_name",
        "region",
        F.coalesce(F.col("won_amount").cast(MONEY), zero).alias("won_amount"),
        F.coalesce(F.col("won_count"), F.lit(0)).cast("long").alias("won_count"),
        F.coalesce(F.col("closed_count"), F.lit(0)).cast("long").alias("closed_count"),
        F.coalesce(F.col("open_pipeline").cast(MONEY), zero).alias("open_pipeline"),
        F.coalesce(F.col("opportunity_count"), F.lit(0)).cast("long").alias("opportunity_count"),
    )
    w = Window.partitionBy("region").orderBy(F.col("won_amount").asc())
    ranked = joined.withColumn("percent_rank", F.percent_rank().over(w))
    return ranked.orderBy(F.col("region").asc_nulls_last(), F.col("won_amount").desc(), "owner_id")


# -- writing -------------------------------------------------------------------------------
def _tidy_partition(lake: Lake, dataset_path: str, ds: str) -> list[str]:
    """Delete Spark's side files (_SUCCESS, .crc, _temporary); return the parquet file names."""
    part = lake.path(Lake.partition(dataset_path, ds))
    keep: list[str] = []
    for info in lake.fs.get_file_info(pafs.FileSelector(part, recursive=False)):
        name = info.base_name
        if info.type == pafs.FileType.File and name.endswith(".parquet") and name[0] not in "._":
            keep.append(name)
        elif info.type == pafs.FileType.Directory:
            lake.fs.delete_dir(info.path)
        elif name != MANIFEST:
            lake.fs.delete_file(info.path)
    return sorted(keep)


def write_curated(
    lake: Lake,
    frame: DataFrame,
    dataset_path: str,
    dataset_id: str,
    key: str,
    ds: str,
    inputs: dict[str, list[str]],
    rows_per_file: int = ROWS_PER_FILE,
) -> dict:
    """Replace ``dataset_path`` ds=<ds> with ``frame`` and commit it with a manifest."""
    rows, key_checksum = spark_count_and_checksum(frame, key)
    lake.clear_partition(dataset_path, ds)
    files_wanted = max(1, math.ceil(rows / rows_per_file))
    (
        frame.coalesce(files_wanted)
        .write.mode("overwrite")
        .option("compression", "snappy")
        .parquet(lake.url(Lake.partition(dataset_path, ds)))
    )
    files = _tidy_partition(lake, dataset_path, ds)
    if not files:
        raise JobError(f"Spark wrote no parquet file for {dataset_id} ds={ds}")
    part = lake.path(Lake.partition(dataset_path, ds))
    written = 0
    schema = None
    for name in files:
        meta = pq.ParquetFile(f"{part}/{name}", filesystem=lake.fs)
        written += meta.metadata.num_rows
        schema = schema or meta.schema_arrow
    if written != rows:  # the manifest must describe the files, not the plan
        raise JobError(f"{dataset_id} ds={ds}: Spark wrote {written} rows but the frame had {rows}")
    return lake.write_manifest(
        dataset_path,
        ds,
        {
            "dataset": dataset_id,
            "files": files,
            "row_count": rows,
            "key_checksum": key_checksum,
            "key": key,
            "schema_fingerprint": schema_fingerprint(schema),
            "inputs": inputs,
        },
    )


# -- the job -------------------------------------------------------------------------------
def run(
    spark: SparkSession,
    lake_uri: str,
    ds: str,
    s3: S3Options | None = None,
    rows_per_file: int = ROWS_PER_FILE,
) -> dict:
    """Build and commit both curated datasets for ``ds``; return the summary."""
    started = time.monotonic()
    date.fromisoformat(ds)  # YYYY-MM-DD or ValueError
    check_s3a(spark, lake_uri)
    lake = Lake(lake_uri, s3=s3 or (s3_options_from_env() if is_s3(lake_uri) else None))

    timings: dict[str, float] = {}
    sf = catalog.SALESFORCE
    live: dict[str, DataFrame] = {}
    inputs: dict[str, list[str]] = {}
    for name in ("User", "Account", "Opportunity"):
        raw, parts = read_raw(spark, lake, sf[name], ds)
        live[name] = latest_live(raw, sf[name])
        inputs[sf[name].dataset_id] = parts

    # Uncommit both outputs before writing either: a failure leaves neither half-replaced.
    lake.clear_partition(OPPORTUNITIES, ds)
    lake.clear_partition(REP_RANKINGS, ds)
    timings["plan"] = time.monotonic() - started

    opportunities = build_opportunities(live["Opportunity"], live["Account"], live["User"]).persist()
    cached = [opportunities]  # each output is counted, checksummed and written: compute it once
    try:
        opp_manifest = write_curated(
            lake,
            opportunities,
            OPPORTUNITIES,
            "curated.opportunities",
            catalog.CURATED_KEYS["opportunities"],
            ds,
            inputs,
            rows_per_file,
        )
        timings["opportunities"] = time.monotonic() - started - sum(timings.values())
        rankings = build_rep_rankings(opportunities, live["User"]).persist()
        cached.append(rankings)
        rank_manifest = write_curated(
            lake,
            rankings,
            REP_RANKINGS,
            "curated.rep_rankings",
            catalog.CURATED_KEYS["rep_rankings"],
            ds,
            {sf["User"].dataset_id: inputs[sf["User"].dataset_id], "curated.opportunities": [ds]},
            rows_per_file,
        )
        timings["rep_rankings"] = time.monotonic() - started - sum(timings.values())
    finally:
        for frame in cached:
            frame.unpersist()

    return {
        "job": JOB,
        "ds": ds,
        "lake": lake.uri,
        "rows": {
            "curated.opportunities": opp_manifest["row_count"],
            "curated.rep_rankings": rank_manifest["row_count"],
        },
        "key_checksums": {
            "curated.opportunities": opp_manifest["key_checksum"],
            "curated.rep_rankings": rank_manifest["key_checksum"],
        },
        "inputs": inputs,
        "seconds": round(time.monotonic() - started, 3),
        "step_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=JOB, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lake", required=True, help="lake URI: a local path, file:///… or s3://bucket/prefix"
    )
    parser.add_argument("--ds", required=True, help="logical date YYYY-MM-DD (reads committed raw ds <= it)")
    parser.add_argument("--master", default=None, help="Spark master when not given to spark-submit")
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        date.fromisoformat(args.ds)
    except ValueError:
        parser.error(f"--ds must be YYYY-MM-DD, got {args.ds!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra = s3a_conf(s3_options_from_env()) if is_s3(args.lake) else None
    owned = SparkSession.getActiveSession() is None  # don't stop a caller's session
    spark = build_session(f"tally-{JOB}-{args.ds}", master=args.master, extra_conf=extra)
    try:
        summary = run(spark, args.lake, args.ds, rows_per_file=args.rows_per_file)
    except JobError as exc:
        print(f"{JOB}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if owned:
            spark.stop()
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
