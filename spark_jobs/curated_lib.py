"""What every curated Spark job shares: reading the raw zone by its manifests (verified against
them: ``tally.lake.verify``), the latest live
version of each record, reading another job's committed output, the rules for hand-typed
Salesforce references and FX conversion, writing and committing a curated ds, and the CLI.

Each job module (``conformed_customers``, ``opportunity_enrichment``, ``rep_rankings``,
``account_engagement``) defines ``JOB``, ``run(spark, lake_uri, ds, ...)`` and ends with
``sys.exit(curated_lib.job_main(JOB, run))``, so it runs on its own under ``spark-submit``.
This module and the Tally modules the jobs import (``tally.contract``, ``tally.catalog``,
``tally.lake``, ``tally.spark_session``) reach the job through ``--py-files``
(``tally.spark_submit.py_files``); tests put ``spark_jobs/`` on the path (pyproject's pytest
``pythonpath``).
The rules are documented for users in ``docs/curated.md``.

**Incremental live records (the state zone, ``tally.lake.state``).** ``live`` does not re-read
every raw partition: it reads ``state/<source>/<object>/ds=<ds>``, the latest version per key
as of ds with tombstones, building and committing it first when it is missing or stale
(``state_for``): the newest valid earlier state plus the raw partitions committed after it, or
every raw partition when none is valid. A second ``live`` of the same dataset and ds (another
job, a re-run) reuses the committed state. **Full refresh** (after a logic change): pass
``--full-refresh`` to a job (``job_main`` sets ``FULL_REFRESH``) or set ``TALLY_FULL_REFRESH=1``
in its environment; each dataset's state for the run's ds is then rebuilt from all raw once per
process (later ds build on it incrementally).

No Python UDFs: every transformation is a Spark SQL expression, so executors (also on a
cluster) need no Python code from this repository.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tally import catalog
from tally.lake import MANIFEST, Lake, Manifest, PartitionWriter, S3Options, commit_id, schema_fingerprint
from tally.lake import state as lake_state
from tally.lake.checksum import checksum_col
from tally.lake.verify import PartitionMismatch, check_footers, verify_spark
from tally.spark_session import build_session, has_class

S3A_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"
S3A_MISSING = (
    "Spark cannot read s3a:// without hadoop-aws on its classpath; use a local lake or a Spark "
    "with hadoop-aws (EMR, the compose image)"
)
ROWS_PER_FILE = 1_000_000
CORPORATE_CURRENCY = "USD"  # DatedConversionRate rates are units of IsoCode per 1 USD
REPORTING_CURRENCY_ENV = "TALLY_REPORTING_CURRENCY"
EVENTS_PATH = "raw/kafka/activity"
EVENT_KEY = "event_id"  # the key of raw/kafka/activity (tally.sources.kafka.schema.KEY)

MONEY = T.DecimalType(38, 9)
SPARK_TYPES: dict[str, T.DataType] = {
    "id": T.StringType(),
    "string": T.StringType(),
    "bool": T.BooleanType(),
    "int": T.LongType(),
    "decimal": MONEY,
    "double": T.DoubleType(),
    "date": T.DateType(),
    "datetime": T.TimestampType(),
}
# The columns of raw/kafka/activity the jobs read (see tally.sources.kafka.schema.EVENT_SCHEMA).
EVENT_SCHEMA = T.StructType([
    T.StructField("event_id", T.StringType()),
    T.StructField("event_type", T.StringType()),
    T.StructField("account_id", T.StringType()),
    T.StructField("user_email", T.StringType()),
    T.StructField("occurred_at", T.TimestampType()),
    T.StructField("_kafka_partition", T.IntegerType()),
    T.StructField("_kafka_offset", T.LongType()),
])


class JobError(RuntimeError):
    """A failure with a message meant for the operator (printed without a traceback)."""


def curated_path(name: str) -> str:
    return f"curated/{name}"


def reporting_currency(value: str | None = None) -> str:
    """``value``, else ``$TALLY_REPORTING_CURRENCY``, else USD; a 3-letter ISO code, upper case."""
    code = (value or os.environ.get(REPORTING_CURRENCY_ENV) or CORPORATE_CURRENCY).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise JobError(f"reporting currency must be a 3-letter ISO code, got {code!r}")
    return code


# -- the lake -------------------------------------------------------------------------------
def is_s3(uri: str) -> bool:
    return uri.split("://", 1)[0].lower() in ("s3", "s3a") if "://" in uri else False


def s3_options_from_env() -> S3Options:
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


def open_lake(spark: SparkSession, lake_uri: str, ds: str, s3: S3Options | None = None) -> Lake:
    """Check ``ds`` and that Spark can reach the lake; return the pyarrow view of it."""
    try:
        date.fromisoformat(ds)
    except ValueError as exc:
        raise JobError(f"ds must be YYYY-MM-DD, got {ds!r}") from exc
    if is_s3(lake_uri) and not has_class(spark, S3A_CLASS):
        raise JobError(S3A_MISSING)
    return Lake(lake_uri, s3=s3 or (s3_options_from_env() if is_s3(lake_uri) else None))


def spark_schema(dataset: catalog.Dataset) -> T.StructType:
    """The raw zone's columns: the catalog's fields, plus the ERP extractor's ``_deleted`` flag.
    A field that an older partition lacks (a column added later) reads as NULL."""
    fields = [T.StructField(f.name, SPARK_TYPES[f.type], True) for f in dataset.fields]
    if dataset.deleted_flag and dataset.deleted_flag not in dataset.field_names:
        fields.append(T.StructField(dataset.deleted_flag, T.BooleanType(), True))
    return T.StructType(fields)


def _manifests(lake: Lake, path: str, parts: list[str], what: str) -> dict[str, Manifest]:
    """The manifests of ``parts``, each partition's listed files checked against it first
    (footer row counts: ``tally.lake.verify``, no data read)."""
    manifests: dict[str, Manifest] = {}
    for part_ds in parts:
        manifest = lake.read_manifest(path, part_ds)
        if manifest is None:  # uncommitted between listing and reading
            raise JobError(f"{what} ds={part_ds} lost its manifest while the job ran")
        check_footers(lake, path, part_ds, manifest)
        manifests[part_ds] = manifest
    return manifests


def _urls(lake: Lake, path: str, manifests: dict[str, Manifest]) -> list[str]:
    return [lake.url(Lake.partition(path, part_ds), f) for part_ds, m in manifests.items() for f in m.files]


def _part_of(file_path: Column) -> Column:
    """The ds of a row from its file's path (``…/ds=<ds>/<file>``)."""
    return F.substring(F.substring_index(F.substring_index(file_path, "/", -2), "/", 1), 4, 10)


def verified_read(frame: DataFrame, path: str, manifests: dict[str, Manifest], key: str | None) -> None:
    """What Spark read of ``manifests``' files, counted and key-checksummed per ds in one
    aggregate (the key column and the file path only) and compared with each commit record;
    ``PartitionMismatch`` names the first partition that differs. ``frame`` must still hold
    ``_metadata``'s file path (a frame read straight from the files)."""
    verify_spark(frame, _part_of(F.col("_metadata.file_path")), key, path, manifests)


def read_raw(spark: SparkSession, lake: Lake, dataset: catalog.Dataset, ds: str) -> tuple[DataFrame, list[str]]:
    """All committed partitions ``<= ds`` of a raw dataset, exactly the files the manifests
    list, verified against them (``verified_read``), with ``_version``: the file's path below
    the dataset, ``ds=<ds>/<file>``, which sorts by partition and then by file. Returns (frame,
    ds values read)."""
    parts = lake.committed(dataset.lake_path, up_to=ds)
    frame, _ = _read_raw_parts(spark, lake, dataset, parts)
    return frame, parts


def _read_raw_parts(spark: SparkSession, lake: Lake, dataset: catalog.Dataset,
                    parts: list[str]) -> tuple[DataFrame, dict[str, Manifest]]:
    """``read_raw`` of the committed partitions ``parts`` only; also returns their manifests."""
    schema = spark_schema(dataset)
    manifests = _manifests(lake, dataset.lake_path, parts, dataset.dataset_id)
    urls = _urls(lake, dataset.lake_path, manifests)
    if not urls:
        return spark.createDataFrame([], schema).withColumn("_version", F.lit("")), manifests
    frame = spark.read.schema(schema).parquet(*urls)
    verified_read(frame, dataset.lake_path, manifests, dataset.key)
    return frame.select(
        *[F.col(f"`{c}`") for c in schema.fieldNames()],
        F.substring_index(F.col("_metadata.file_path"), "/", -2).alias("_version"),
    ), manifests


def latest_versions(frame: DataFrame, dataset: catalog.Dataset) -> DataFrame:
    """The latest version per key, tombstones kept: greatest cursor (NULL last), then greatest
    ``_version`` (ds, then file). The one upsert rule of the full and the incremental path."""
    order = [F.col(dataset.cursor).desc_nulls_last(), F.col("_version").desc()]
    w = Window.partitionBy(dataset.key).orderBy(*order)
    return frame.withColumn("_rn", F.row_number().over(w)).filter(F.col("_rn") == 1).drop("_rn")


def not_deleted(dataset: catalog.Dataset) -> Column:
    """True for a row that is not a tombstone (a NULL flag is not one)."""
    if not dataset.deleted_flag:
        return F.lit(True)
    return ~F.coalesce(F.col(dataset.deleted_flag), F.lit(False))


def latest_live(frame: DataFrame, dataset: catalog.Dataset) -> DataFrame:
    """Latest version per key (greatest cursor, then greatest ds, then file); deleted records
    (tombstones) dropped."""
    latest = latest_versions(frame, dataset)
    if dataset.deleted_flag:
        latest = latest.filter(not_deleted(dataset))
    return latest.drop("_version")


def live(spark: SparkSession, lake: Lake, dataset_id: str, ds: str, inputs: dict[str, list[str]],
         full_refresh: bool | None = None) -> DataFrame:
    """The live records of a raw dataset as of ``ds`` (``latest_live`` of every raw partition
    ``<= ds``), read from its committed state (``state_for``); records the raw partitions the
    state reflects in ``inputs``."""
    dataset = catalog.get(dataset_id)
    frame, manifest = state_for(spark, lake, dataset, ds, full_refresh=full_refresh)
    inputs[dataset_id] = sorted(manifest["consumed"])
    live_rows = frame.filter(not_deleted(dataset)) if dataset.deleted_flag else frame
    return live_rows.drop("_version")


# -- the state zone (tally.lake.state) ------------------------------------------------------
FULL_REFRESH_ENV = "TALLY_FULL_REFRESH"
FULL_REFRESH: bool | None = None  # set by job_main from --full-refresh; None: $TALLY_FULL_REFRESH decides
LITTER_AGE_S = 3600.0  # unlisted files older than this in a state ds are a crashed writer's: swept
_REFRESHED: set[tuple[str, str, str]] = set()  # (lake, state path, ds) rebuilt in full by this process


def full_refresh_requested(full_refresh: bool | None = None) -> bool:
    """``full_refresh`` if given, else ``FULL_REFRESH`` if set, else ``$TALLY_FULL_REFRESH`` (1/true/yes)."""
    for value in (full_refresh, FULL_REFRESH):
        if value is not None:
            return bool(value)
    return os.environ.get(FULL_REFRESH_ENV, "").strip().lower() in ("1", "true", "yes")


def state_schema(dataset: catalog.Dataset) -> T.StructType:
    """A state's columns: the raw ones (``spark_schema``) and ``_version``."""
    return T.StructType([*spark_schema(dataset).fields, T.StructField("_version", T.StringType(), True)])


def read_state(spark: SparkSession, lake: Lake, dataset: catalog.Dataset, ds: str, *,
               measured: Manifest | None = None) -> tuple[DataFrame, Manifest]:
    """The committed state of ``dataset`` for ``ds``, exactly the files its manifest lists,
    verified against it: footers first, then count and key checksum in one aggregate, except
    when ``measured`` is the manifest this process just committed for these files (their count
    and checksum were measured while Spark wrote them, their footers are checked here)."""
    path = lake_state.state_path(dataset)
    manifests = _manifests(lake, path, [ds], f"state.{dataset.dataset_id}")
    schema = state_schema(dataset)
    frame = spark.read.schema(schema).parquet(*_urls(lake, path, manifests))
    if measured is None or commit_id(measured) != commit_id(manifests[ds]):
        verified_read(frame, path, manifests, dataset.key)
    return frame.select(*[F.col(f"`{c}`") for c in schema.fieldNames()]), manifests[ds]


def state_for(spark: SparkSession, lake: Lake, dataset: catalog.Dataset, ds: str, *,
              full_refresh: bool | None = None, rows_per_file: int = ROWS_PER_FILE) -> tuple[DataFrame, Manifest]:
    """The state of ``dataset`` for ``ds`` (read verified) and its manifest, built and committed
    first unless a committed one is valid for exactly the current raw zone (``tally.lake.state``).

    A build starts from the newest valid state before ``ds`` (``valid_base``) and upserts the raw
    partitions committed after it (``latest_versions`` of the union), or from every raw
    partition ``<= ds`` when there is none or a full refresh is requested
    (``full_refresh_requested``; once per process and ds)."""
    path = lake_state.state_path(dataset)
    marker = (lake.uri, path, ds)
    force = full_refresh_requested(full_refresh) and marker not in _REFRESHED
    current = lake_state.consumed_ids(lake, dataset, ds)
    reasons: list[str] = []
    if force:
        base, reasons = None, ["full refresh requested"]
    else:
        existing = lake.read_manifest(path, ds)
        if existing is not None:
            stale = lake_state.staleness(lake, dataset, existing, current)
            if stale is None:
                return read_state(spark, lake, dataset, ds)
            reasons.append(f"state ds={ds} is stale: {stale}")
        base, why = lake_state.valid_base(lake, dataset, ds, current=current)
        reasons += [why] if why else []
    built, mine = _build_state(spark, lake, dataset, ds, base, sorted(d for d in current if base is None or d > base),
                               rebuilt_because="; ".join(reasons) or None, replace=force, rows_per_file=rows_per_file)
    if force:
        _REFRESHED.add(marker)
    return read_state(spark, lake, dataset, ds, measured=built if mine else None)


def _build_state(spark: SparkSession, lake: Lake, dataset: catalog.Dataset, ds: str, base: str | None,
                 delta: list[str], *, rebuilt_because: str | None, replace: bool,
                 rows_per_file: int) -> tuple[Manifest, bool]:
    """Upsert the raw partitions ``delta`` into the state of ``base`` (None: nothing) and commit
    the result as the state of ``ds`` (``_commit_state``). What the manifest says was consumed
    is what was read: the base's record and the delta manifests as read. Returns the committed
    manifest and whether it is this build's (False: a concurrent build's, kept)."""
    path = lake_state.state_path(dataset)
    raw, delta_manifests = _read_raw_parts(spark, lake, dataset, delta)
    consumed: dict[str, str] = {}
    base_commit = None
    frame = raw
    if base is not None:
        base_frame, base_manifest = read_state(spark, lake, dataset, base)
        consumed.update(base_manifest["consumed"])
        base_commit = commit_id(base_manifest)
        frame = base_frame.unionByName(raw)
    delta_ids = {d: commit_id(m) for d, m in delta_manifests.items()}
    consumed.update(delta_ids)
    writer = PartitionWriter(lake, path, ds)
    aggs = [F.count(F.lit(1)).alias("_rows"), checksum_col(dataset.key).alias("_checksum"),
            count_if(not_deleted(dataset)).alias("_live")]
    measured, files, schema = _write_measured(lake, latest_versions(frame, dataset), writer,
                                              f"state.{dataset.dataset_id}", aggs, rows_per_file)
    manifest = Manifest(
        dataset=f"state.{dataset.dataset_id}", key=dataset.key, files=files, row_count=int(measured["_rows"]),
        key_checksum=str(measured["_checksum"]), schema_fingerprint=schema_fingerprint(schema),
        mode="full" if base is None else "incremental",
        extra={"base": base, "base_commit": base_commit, "delta": delta_ids, "consumed": dict(sorted(consumed.items())),
               "live_rows": int(measured["_live"]), "layout": lake_state.layout(dataset),
               "rebuilt_because": rebuilt_because})
    return _commit_state(lake, dataset, writer, manifest, replace=replace)


def _commit_state(lake: Lake, dataset: catalog.Dataset, writer: PartitionWriter, manifest: Manifest, *,
                  replace: bool) -> tuple[Manifest, bool]:
    """Commit a built state, safe against another job building the same ds at the same time.

    When a state for the same raw commits was committed meanwhile, it is kept and this attempt's
    files are dropped (unless ``replace``: a full refresh). Otherwise the manifest is written
    without the usual sweep, which would delete a concurrent writer's staged or committed files
    while its job reads them; only the files of the version replaced (stale, or being refreshed)
    and unlisted files older than ``LITTER_AGE_S`` (a crashed writer's) are removed."""
    path = lake_state.state_path(dataset)
    previous = lake.read_manifest(path, writer.ds)
    if (not replace and previous is not None
            and lake_state.staleness(lake, dataset, previous, manifest["consumed"]) is None):
        writer.abort()
        return previous, False
    written = writer.commit(manifest, sweep_now=False)
    keep = {*written.files, MANIFEST}
    doomed = set(previous.files) - keep if previous is not None else set()
    cutoff = time.time() - LITTER_AGE_S
    folder = lake.path(Lake.partition(path, writer.ds))
    for info in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=False)):
        name = info.base_name
        if name in keep:
            continue
        own_stage = name == writer.stage_dir().rsplit("/", 1)[-1]
        old = info.mtime is not None and info.mtime.timestamp() < cutoff
        if name in doomed or own_stage or old:
            with contextlib.suppress(OSError):
                if info.type == pafs.FileType.Directory:
                    lake.fs.delete_dir(info.path)
                else:
                    lake.fs.delete_file(info.path)
    return written, True


def read_curated(spark: SparkSession, lake: Lake, name: str, ds: str, inputs: dict[str, list[str]]) -> DataFrame:
    """Another job's committed output for ``ds`` (the files its manifest lists)."""
    path = curated_path(name)
    if lake.read_manifest(path, ds) is None:
        raise JobError(f"curated.{name} ds={ds} is not committed: run its job first")
    inputs[f"curated.{name}"] = [ds]
    manifests = _manifests(lake, path, [ds], f"curated.{name}")
    frame = spark.read.parquet(*_urls(lake, path, manifests))
    verified_read(frame, path, manifests, catalog.CURATED_KEYS[name])
    return frame


def read_events(spark: SparkSession, lake: Lake, ds: str, inputs: dict[str, list[str]]) -> DataFrame:
    """Every committed ds ``<= ds`` of the landed activity events (none landed: an empty frame)."""
    parts = lake.committed(EVENTS_PATH, up_to=ds)
    inputs["kafka.activity"] = parts
    manifests = _manifests(lake, EVENTS_PATH, parts, "kafka.activity")
    urls = _urls(lake, EVENTS_PATH, manifests)
    if not urls:
        return spark.createDataFrame([], EVENT_SCHEMA)
    frame = spark.read.schema(EVENT_SCHEMA).parquet(*urls)
    verified_read(frame, EVENTS_PATH, manifests, EVENT_KEY)
    return frame


# -- hand-typed Salesforce references ------------------------------------------------------
def with_reference_key(frame: DataFrame, ref: str) -> DataFrame:
    """Add ``_ref`` (the reference trimmed, NULL if blank) and ``_rk``, the key it is looked up
    by: an 18-character reference upper-cased, a 15-character one as typed (case-sensitive),
    anything else NULL (it cannot name a record)."""
    return frame.withColumn("_ref", F.nullif(F.trim(F.col(ref)), F.lit(""))).withColumn(
        "_rk", F.when(F.length("_ref") == 18, F.upper("_ref")).when(F.length("_ref") == 15, F.col("_ref")))


def id_keys(record_id: Column) -> tuple[Column, Column]:
    """The two reference keys (``with_reference_key``) that name the 18-character ``record_id``:
    its upper-cased form and its first 15 characters. The lengths differ, so a key names one
    live id at most (18-character ids are unique ignoring case)."""
    return F.upper(record_id), F.substring(record_id, 1, 15)


def resolve_reference(frame: DataFrame, ref: str, targets: DataFrame, out: str, how: str) -> DataFrame:
    """Resolve the hand-typed Salesforce id in column ``ref`` against ``targets`` (one column
    ``id``: live 18-character ids). Adds ``out`` (the resolved 18-char id or NULL) and ``how``:

    - ``missing_ref``: no reference (NULL or blank);
    - ``exact``: an 18-char reference equal to a live id;
    - ``case_fixed``: an 18-char reference equal to a live id but for letter case (the 3-char
      suffix makes 18-char ids unique ignoring case);
    - ``expanded_15``: a 15-char (case-sensitive) reference equal to the first 15 chars of a live id;
    - ``unknown``: anything else (a deleted or never-seen record, a 15-char id in the wrong
      case, a malformed value).
    """
    # One lookup table, one join: every live id under both its keys (see id_keys).
    key18, key15 = id_keys(F.col("id"))
    lookup = targets.select(F.explode(F.array(
        F.struct(key18.alias("_k"), F.col("id").alias("_tid")),
        F.struct(key15.alias("_k"), F.col("id").alias("_tid")),
    )).alias("_t")).select("_t._k", "_t._tid")
    keyed = with_reference_key(frame, ref)
    # no broadcast hint: the targets may be every live opportunity (millions); Spark broadcasts
    # them by itself below spark.sql.autoBroadcastJoinThreshold (TALLY_SPARK_BROADCAST_MB)
    joined = (
        keyed.join(lookup, F.col("_rk") == F.col("_k"), "left")
        .withColumn("_id18", F.when(F.length("_ref") == 18, F.col("_tid")))
        .withColumn("_id15", F.when(F.length("_ref") == 15, F.col("_tid")))
    )
    resolution = (
        F.when(F.col("_ref").isNull(), "missing_ref")
        .when(F.col("_id18").isNotNull(), F.when(F.col("_ref") == F.col("_id18"), "exact").otherwise("case_fixed"))
        .when(F.col("_id15").isNotNull(), "expanded_15")
        .otherwise("unknown")
    )
    return (
        joined.withColumn(out, F.coalesce("_id18", "_id15"))
        .withColumn(how, resolution)
        .drop("_ref", "_rk", "_k", "_tid", "_id18", "_id15")
    )


# -- FX ------------------------------------------------------------------------------------
def rate_table(rates: DataFrame) -> DataFrame:
    """Live DatedConversionRate rows as non-overlapping ranges (iso, start, next, rate_u), the
    rate in millionths (Salesforce keeps 6 decimals) so conversions are exact decimal arithmetic.

    Salesforce keeps a currency's ranges back to back; should two overlap anyway, the later
    start ends the earlier range (and of two with the same start, the latest modified wins),
    so a date never matches two rates and a join never fans out.
    """
    cleaned = rates.select(
        F.upper(F.trim("IsoCode")).alias("iso"),
        F.col("StartDate").alias("start"),
        F.col("NextStartDate").alias("next"),
        F.round(F.col("ConversionRate") * 1_000_000).cast("long").alias("rate_u"),
        F.col("SystemModstamp").alias("_stamp"),
    ).filter((F.col("rate_u") > 0) & (F.col("iso") != CORPORATE_CURRENCY) & F.col("start").isNotNull())
    same_start = Window.partitionBy("iso", "start").orderBy(F.col("_stamp").desc_nulls_last())
    unique = cleaned.withColumn("_rn", F.row_number().over(same_start)).filter("_rn = 1")
    following = F.lead("start").over(Window.partitionBy("iso").orderBy("start"))
    return unique.select(
        "iso", "start",
        F.when(F.col("next").isNull(), following)
        .when(following.isNull(), F.col("next"))
        .otherwise(F.least(F.col("next"), following))
        .alias("next"),
        "rate_u",
    )


def _month(day: Column) -> Column:
    """A date's month as one integer (year * 12 + month), the key rates are looked up by."""
    return F.year(day) * 12 + F.month(day)


def _rate_on(frame: DataFrame, iso: Column, day: Column, rates: DataFrame, out: str) -> DataFrame:
    """Add ``out``: the ``rate_table`` rate (millionths) in force for currency ``iso`` on ``day``,
    NULL if none. Bounded ranges are listed under every month they overlap and joined on
    (currency, month); each currency's open range (no next start, at most one) is joined on the
    currency alone. So a row is compared with one or two ranges instead of every range of its
    currency, and, the ranges not overlapping, at most one of them matches."""
    first, last = _month(F.col("start")), _month(F.date_sub(F.col("next"), 1))
    bounded = F.broadcast(rates.filter(F.col("next").isNotNull()).select(
        F.col("iso").alias("_b_iso"), F.explode(F.sequence(first, F.greatest(first, last))).alias("_b_month"),
        F.col("start").alias("_b_start"), F.col("next").alias("_b_next"), F.col("rate_u").alias("_b_rate")))
    open_ended = F.broadcast(rates.filter(F.col("next").isNull()).select(
        F.col("iso").alias("_o_iso"), F.col("start").alias("_o_start"), F.col("rate_u").alias("_o_rate")))
    keyed = frame.withColumn("_fx_iso", iso).withColumn("_fx_day", day)
    fx_day = F.col("_fx_day")
    in_bounded = ((F.col("_fx_iso") == F.col("_b_iso")) & (_month(fx_day) == F.col("_b_month"))
                  & (F.col("_b_start") <= fx_day) & (fx_day < F.col("_b_next")))
    in_open = (F.col("_fx_iso") == F.col("_o_iso")) & (F.col("_o_start") <= fx_day)
    return (
        keyed.join(bounded, in_bounded, "left").join(open_ended, in_open, "left")
        .withColumn(out, F.coalesce("_b_rate", "_o_rate"))
        .drop("_fx_iso", "_fx_day", "_b_iso", "_b_month", "_b_start", "_b_next", "_b_rate", "_o_iso", "_o_start",
              "_o_rate")
    )


def with_fx(frame: DataFrame, amount: str, currency: str, day: str, rates: DataFrame, reporting: str) -> DataFrame:
    """Add ``fx_rate`` (reporting units per source unit on ``day``, NULL if a rate is missing)
    and ``amount_reporting`` = round_half_up(amount / rate(src) * rate(reporting), 9).

    ``rates`` is a :func:`rate_table`. A rate applies to ``start <= day < next``; USD is 1;
    the same currency converts at exactly 1. A missing rate leaves both NULL; the row stays.
    """
    keyed = frame.withColumn("_cur", F.upper(F.trim(F.col(currency))))
    joined = _rate_on(keyed, F.col("_cur"), F.col(day), rates, "_src_rate")
    if reporting != CORPORATE_CURRENCY:
        joined = _rate_on(joined, F.lit(reporting), F.col(day), rates, "_rep_rate")
    corporate = F.lit(1_000_000).cast("long")
    src_u = F.when(F.col("_cur") == CORPORATE_CURRENCY, corporate).otherwise(F.col("_src_rate"))
    rep_u = corporate if reporting == CORPORATE_CURRENCY else F.col("_rep_rate")
    same = F.col("_cur") == F.lit(reporting)
    # decimal(24,9) x decimal(13,0) is exact in decimal(38,9); dividing that by a decimal(13,0)
    # gives decimal(38,9) rounded half-up once (Spark's decimal division rules).
    scaled = (F.col(amount).cast("decimal(24,9)") * rep_u.cast("decimal(13,0)")).cast("decimal(38,9)")
    converted = (scaled / src_u.cast("decimal(13,0)")).cast(MONEY)
    return (
        joined.withColumn(
            "fx_rate", F.when(same, F.lit(1.0)).otherwise(rep_u.cast("double") / src_u.cast("double")))
        .withColumn("amount_reporting", F.when(same, F.col(amount).cast(MONEY)).otherwise(converted))
        .drop("_cur", "_src_rate", "_rep_rate")
    )


def count_if(condition: Column) -> Column:
    """Aggregate: rows where ``condition`` holds (for ``write_curated``'s ``counts``)."""
    return F.count(F.when(condition, 1))


def counts_of(column: str, values: tuple[str, ...]) -> dict[str, Column]:
    """``{value: count_if(column == value)}`` for a column's known domain."""
    return {v: count_if(F.col(column) == v) for v in values}


def unrankable_counts() -> dict[str, Column]:
    """Aggregates over curated opportunities: those ``rep_rankings`` cannot rank, by reason.
    ``no_owner``: no owner_id; ``no_close_date``: an owner but no close_date."""
    owner = F.col("owner_id").isNotNull()
    return {"no_owner": count_if(~owner), "no_close_date": count_if(owner & F.col("close_date").isNull())}


# -- writing -------------------------------------------------------------------------------
OBSERVATION_WAIT_S = 60.0


def observed(observation, what: str) -> dict:
    """The metrics of a Spark ``Observation`` whose action has finished.

    ``Observation.get`` waits forever when the plan lost the observation (Spark prunes a join's
    empty side, observation included), so wait in a thread and fail with a message instead."""
    import threading

    got: dict = {}
    waiter = threading.Thread(target=lambda: got.update(observation.get), daemon=True)
    waiter.start()
    waiter.join(OBSERVATION_WAIT_S)
    if waiter.is_alive():
        raise JobError(f"Spark reported no measurements for {what} after it was written; nothing was committed")
    return got


@dataclass
class Staged:
    """A curated ds written and measured but not committed yet: its files are in the ds folder
    under this attempt's names, which no committed manifest lists (see ``tally.lake.writer``)."""

    writer: PartitionWriter
    manifest: Manifest

    def urls(self) -> list[str]:
        """The staged files, for Spark to read before they are committed."""
        part = Lake.partition(self.writer.dataset_path, self.writer.ds)
        return [self.writer.lake.url(part, f) for f in self.manifest.files]

    def commit(self) -> Manifest:
        """The manifest (one atomic write) makes the files the ds; the previous version's are swept."""
        return self.writer.commit(self.manifest)


def write_curated(lake: Lake, frame: DataFrame, name: str, ds: str, inputs: dict[str, list[str]], *args,
                  **options) -> Manifest:
    """Replace ``curated/<name>`` ds=<ds> with ``frame`` and commit it: ``stage_curated`` (same
    arguments), then ``Staged.commit``. The previous version stays committed until the new
    manifest is written."""
    return stage_curated(lake, frame, name, ds, inputs, *args, **options).commit()


def stage_curated(
    lake: Lake,
    frame: DataFrame,
    name: str,
    ds: str,
    inputs: dict[str, list[str]],
    extra: dict | None = None,
    rows_per_file: int = ROWS_PER_FILE,
    counts: dict[str, dict[str, Column]] | None = None,
    publish: list[str] | None = None,
    derive: Callable[[dict], dict] | None = None,
) -> Staged:
    """Write ``frame`` as a new version of ``curated/<name>`` ds=<ds> and return it with its
    manifest, uncommitted: row count, key checksum over ``catalog.CURATED_KEYS[name]``, schema
    fingerprint, inputs, the job's ``extra`` values and ``counts`` (``{group: {name:
    aggregate}}``, group ``""`` for top-level counts). Only the ``publish`` columns are written
    (all by default).

    Spark writes into the attempt's stage folder inside the ds (``PartitionWriter.stage_dir``);
    its parquet files are then moved into the ds under the attempt's names, never over a
    committed file. The count, checksum and ``counts`` are measured while the files are written
    (a Spark ``Observation`` on the write), so ``frame`` is computed once and need not be
    cached. ``derive(extra)``, if given, runs after the write (when the job's own observations
    are complete) and returns the manifest's extra values. The row count must equal the rows in
    the written Parquet files' footers, or nothing is staged: a stage Spark re-ran (which would
    count twice) fails the job instead of committing a wrong manifest.

    Files hold at most ``rows_per_file`` rows and are written by as many tasks as the plan has
    partitions (no coalescing into one task)."""
    path, dataset_id, key = curated_path(name), f"curated.{name}", catalog.CURATED_KEYS[name]
    aggs = [F.count(F.lit(1)).alias("_rows"), checksum_col(key).alias("_checksum")]
    for group, columns in (counts or {}).items():
        aggs += [col.alias(f"{group}::{label}") for label, col in columns.items()]
    writer = PartitionWriter(lake, path, ds)
    measured, files, schema = _write_measured(lake, frame, writer, dataset_id, aggs, rows_per_file, publish)
    try:
        rows, key_checksum = int(measured.pop("_rows")), str(measured.pop("_checksum"))
        extra = dict(extra or {})
        for label, value in measured.items():
            group, _, item = label.partition("::")
            value = int(value) if value is not None else None
            if group:
                extra.setdefault(group, {})[item] = value
            else:  # the "" group: top-level counts
                extra[item] = value
        if derive is not None:
            extra = derive(extra)
    except BaseException:
        writer.abort()
        raise
    manifest = Manifest(dataset=dataset_id, files=files, row_count=rows, key_checksum=key_checksum, key=key,
                        schema_fingerprint=schema_fingerprint(schema), extra={**extra, "inputs": inputs})
    return Staged(writer, manifest)


def _write_measured(lake: Lake, frame: DataFrame, writer: PartitionWriter, dataset_id: str, aggs: list[Column],
                    rows_per_file: int, publish: list[str] | None = None) -> tuple[dict, list[str], object]:
    """Write ``frame`` (only the ``publish`` columns, if given) into ``writer``'s stage folder,
    measuring ``aggs`` (one of them ``_rows``, the row count) in the same pass (a Spark
    ``Observation``), and adopt the files into the ds, uncommitted. Returns (measurements, file
    names, Arrow schema of the files). The footers must add up to the measured ``_rows``
    (a stage Spark re-ran counts twice), or the attempt is aborted and ``JobError`` raised."""
    from pyspark.sql import Observation

    observation = Observation(f"{dataset_id.replace('.', '_')}_{time.monotonic_ns()}")
    measuring = frame.observe(observation, *aggs)
    if publish is not None:
        measuring = measuring.select(*publish)
    ds = writer.ds
    try:
        (
            measuring.write.mode("overwrite")
            .option("compression", "snappy")
            .option("maxRecordsPerFile", rows_per_file)
            .parquet(lake.url(writer.stage_dir()))
        )
        measured = observed(observation, dataset_id)
        rows = int(measured["_rows"])
        files = writer.adopt_staged()
        if not files:
            raise JobError(f"Spark wrote no parquet file for {dataset_id} ds={ds}")
        written = 0
        schema = None
        for file_name in files:
            meta = pq.ParquetFile(f"{writer.folder}/{file_name}", filesystem=lake.fs)
            written += meta.metadata.num_rows
            schema = schema or meta.schema_arrow
        if written != rows:  # the manifest must describe the files, not the plan
            raise JobError(f"{dataset_id} ds={ds}: Spark wrote {written} rows but measured {rows} while writing")
    except BaseException:
        writer.abort()
        raise
    return measured, files, schema


def summary(job: str, ds: str, lake: Lake, manifests: dict[str, Manifest], started: float, **more) -> dict:
    """The one JSON line a job prints: rows and checksums per output, inputs, seconds."""
    return {
        "job": job,
        "ds": ds,
        "lake": lake.uri,
        "rows": {f"curated.{n}": m.row_count for n, m in manifests.items()},
        "key_checksums": {f"curated.{n}": m.key_checksum for n, m in manifests.items()},
        "inputs": {n: m["inputs"] for n, m in manifests.items()},
        "seconds": round(time.monotonic() - started, 3),
        **more,
    }


# -- the command line ----------------------------------------------------------------------
RunFn = Callable[..., dict]


def parse_args(job: str, description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=job, description=description)
    parser.add_argument("--lake", required=True, help="lake URI: a local path, file:///… or s3://bucket/prefix")
    parser.add_argument("--ds", required=True, help="logical date YYYY-MM-DD (reads committed raw ds <= it)")
    parser.add_argument("--master", default=None, help="Spark master when not given to spark-submit")
    parser.add_argument(
        "--reporting-currency",
        default=None,
        help=f"ISO code money is converted to (default ${REPORTING_CURRENCY_ENV} or {CORPORATE_CURRENCY})",
    )
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--full-refresh", action="store_true",
                        help=f"rebuild the raw datasets' states for --ds from all raw partitions (also ${FULL_REFRESH_ENV}=1)")
    args = parser.parse_args(argv)
    try:
        date.fromisoformat(args.ds)
    except ValueError:
        parser.error(f"--ds must be YYYY-MM-DD, got {args.ds!r}")
    return args


def job_main(job: str, run: RunFn, description: str, argv: list[str] | None = None) -> int:
    """Parse the arguments, build the session, ``run`` the job, print its summary as one JSON line.
    Exit 0 on success, 2 on a ``JobError`` or an input that is not what its commit record says
    (``PartitionMismatch``; message on stderr)."""
    args = parse_args(job, description, argv)
    global FULL_REFRESH
    if args.full_refresh:  # read by state_for (live) without passing a flag through every job's run()
        FULL_REFRESH = True
    try:
        currency = reporting_currency(args.reporting_currency)
    except JobError as exc:
        print(f"{job}: error: {exc}", file=sys.stderr)
        return 2
    extra = s3a_conf(s3_options_from_env()) if is_s3(args.lake) else None
    owned = SparkSession.getActiveSession() is None  # don't stop a caller's session
    spark = build_session(f"tally-{job}-{args.ds}", master=args.master, extra_conf=extra)
    try:
        result = run(spark, args.lake, args.ds, reporting_currency=currency, rows_per_file=args.rows_per_file)
    except (JobError, PartitionMismatch) as exc:  # an input differs from its commit record: nothing written
        print(f"{job}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if owned:
            spark.stop()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)
    return 0


def quarter_of(column: str) -> Column:
    """``'YYYY-Qn'`` of a date column (NULL stays NULL)."""
    return F.concat(F.year(column).cast("string"), F.lit("-Q"), F.quarter(column).cast("string"))
