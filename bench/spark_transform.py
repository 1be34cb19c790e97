# ruff: noqa: S608 - the SQL is built from constants, the catalog and quoted paths of our own temp lake
"""The curated Spark jobs beside the same logic in DuckDB, on the same raw files.

Generates a raw zone at scale with numpy/pyarrow (not timed; no simulator, no ERP): committed
partitions of Salesforce User, Account, Opportunity (``--opportunities``, 5M by default) and
DatedConversionRate, ERP customers and sales_orders, and raw/kafka/activity events, in two ds
(the second holding updated versions and tombstones), with the catalog's raw schemas and messy
hand-typed references (18-char, wrong case, 15-char, blank, unknown). Then:

* **Spark**: ``spark_jobs/all_curated.py``'s ``run`` (conformed_customers, opportunity_enrichment,
  rep_rankings, account_engagement) in ONE application started with
  ``tally.spark_session.build_session`` (the project's tuned defaults, ``local[*]``), writing and
  committing the curated zone in the lake. The session start-up (JVM + session) is timed
  separately and is NOT in the ratio.
* **DuckDB**: the same four jobs in SQL (``duckdb`` package, as many threads as Spark has cores),
  reading exactly the Parquet files the raw manifests list: latest version per key with tombstones
  removed, reference resolution, joins to accounts and users, FX over effective-dated ranges with
  exact decimal arithmetic, PERCENT_RANK / DENSE_RANK per region and quarter, event dedup and
  engagement, the manifests' counts and key checksums, and Parquet outputs.

Afterwards (not timed) every output is compared: row counts, key checksums, Parquet schemas, the
manifests' counts, sum(amount_reporting), count by dense_rank, and a full-row ``EXCEPT ALL`` both
ways. Any difference fails the run (exit 1, after the last line).

Prints a Rich table of per-job seconds; the last line is ``spark_transform: duckdb_ratio=…``
(Spark seconds ÷ DuckDB seconds over the four jobs). Goal ≤ 2.5.

    .venv/bin/python bench/spark_transform.py --opportunities 5000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from tally import catalog
from tally.core.paths import spark_jobs_dir
from tally.lake import Lake, Manifest, PartitionWriter, arrow_schema

# The jobs run in-process here: they import curated_lib and each other as top-level modules
# (what --py-files gives them under spark-submit), so their folder goes on the path.
if str(spark_jobs_dir()) not in sys.path:
    sys.path.insert(0, str(spark_jobs_dir()))

DS1, DS2 = "2026-06-29", "2026-06-30"
RUN_DS = DS2
BATCH = 250_000
JOBS = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")
OUTPUTS = {  # output -> key column (catalog.CURATED_KEYS)
    "conformed_customers": "customer_id", "opportunities": "opportunity_id", "order_links": "order_id",
    "rep_rankings": "ranking_id", "account_engagement": "account_id",
}
EVENTS_PATH = "raw/kafka/activity"

# -- generating the raw zone (numpy, vectorised) -----------------------------------------------
_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_SUFFIX = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", np.uint8)
EPOCH_US = np.datetime64("1970-01-01T00:00:00", "us")
DAY_US = 86_400_000_000
CLOSE_FROM = (date(2023, 1, 1) - date(1970, 1, 1)).days
CLOSE_DAYS = (date(2026, 6, 30) - date(2023, 1, 1)).days + 1
STAMP1 = int((np.datetime64("2026-06-29T12:00:00", "us") - EPOCH_US).astype(np.int64))
STAMP2 = STAMP1 + DAY_US
CURRENCIES = np.array(["USD", "EUR", "GBP", "JPY", "CAD", "CHF", "XXX"])  # XXX: no rate
CURRENCY_P = [0.5, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01]
RATE_BASE = {"EUR": 0.92, "GBP": 0.79, "JPY": 151.3, "CAD": 1.36, "CHF": 0.9}  # units per USD
STAGES = np.array(["Prospecting", "Qualification", "Proposal/Price Quote", "Negotiation/Review",
                   "Closed Won", "Closed Lost"])
STAGE_P = [0.2, 0.15, 0.15, 0.1, 0.25, 0.15]
STAGE_PROB = np.array([10.0, 20.0, 60.0, 90.0, 100.0, 0.0])
REGIONS = np.array(["AMER", "EMEA", "APAC", "LATAM"])
COUNTRIES = np.array(["US", "DE", "GB", "FR", "JP", "CA", "CH", "BR"])
INDUSTRIES = np.array(["Tech", "Finance", "Retail", "Health", "Energy", "Media"])
EVENT_TYPES = np.array(["page_view", "feature_used", "login", "email_open"])


def sf_ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``tally.sfid.make(prefix, n)`` for every n, as an Arrow string array (no Python loop)."""
    n = len(numbers)
    m = np.empty((n, 18), np.uint8)
    m[:, :6] = np.frombuffer(f"{prefix}5g0".encode(), np.uint8)
    rest = numbers.astype(np.int64)
    for col in range(14, 5, -1):
        m[:, col] = _BASE62[rest % 62]
        rest = rest // 62
    upper = (m[:, :15] >= ord("A")) & (m[:, :15] <= ord("Z"))
    weights = 1 << np.arange(5)
    for chunk in range(3):
        m[:, 15 + chunk] = _SUFFIX[(upper[:, chunk * 5:chunk * 5 + 5] * weights).sum(axis=1)]
    offsets = np.arange(0, (n + 1) * 18, 18, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(m.tobytes()))


def labels(values: np.ndarray, rng: np.random.Generator, n: int, p=None) -> pa.Array:
    return pc.take(pa.array(values), pa.array(rng.choice(len(values), n, p=p)))


def numbered(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def money(cents: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Exact decimal(38,9) from integer cents (through text: no float involved)."""
    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    out = pc.cast(pc.binary_join_element_wise(whole, frac, "."), pa.decimal128(38, 9))
    return out if null is None else pc.if_else(pa.array(null), pa.scalar(None, out.type), out)


def with_nulls(arr: pa.Array, null: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(null), pa.scalar(None, arr.type), arr)


def stamps(base: int, rng: np.random.Generator, n: int) -> np.ndarray:
    return base + rng.integers(0, DAY_US // 2, n)


def messy_refs(ids: pa.Array, rng: np.random.Generator) -> pa.Array:
    """Hand-typed references to ``ids``: mostly exact, some lower-cased, 15-char, 15-char in the
    wrong case (unresolvable), padded with spaces, blank, NULL or garbage."""
    n = len(ids)
    kind = rng.choice(8, n, p=[0.6, 0.08, 0.1, 0.03, 0.05, 0.04, 0.05, 0.05])
    short = pc.utf8_slice_codeunits(ids, 0, 15)
    forms = [ids, pc.utf8_lower(ids), short, pc.utf8_lower(short),
             pc.binary_join_element_wise(" ", ids, "  ", ""), pa.array(["   "] * n), pa.nulls(n, pa.string()),
             numbered("REF-", np.arange(n))]
    out = forms[0]
    for k in range(1, len(forms)):
        out = pc.if_else(pa.array(kind == k), forms[k], out)
    return out


def batch_of(schema: pa.Schema, cols: dict) -> pa.RecordBatch:
    arrays = []
    for f in schema:
        value = cols[f.name]
        if not isinstance(value, pa.Array):
            if pa.types.is_timestamp(f.type):
                value = pa.array(value, pa.int64()).cast(f.type)
            elif pa.types.is_date32(f.type):
                value = pa.array(value, pa.int32()).cast(f.type)
            else:
                value = pa.array(value, f.type)
        arrays.append(value.cast(f.type) if value.type != f.type else value)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def users(keys, rng, stamp):
    n = len(keys)
    names = numbered("Rep ", keys)
    return {"Id": sf_ids("005", keys), "Name": names, "Email": numbered("rep", keys), "IsActive": np.ones(n, bool),
            "Region__c": with_nulls(labels(REGIONS, rng, n), rng.random(n) < 0.02),
            "CreatedDate": np.full(n, STAMP1 - 400 * DAY_US), "SystemModstamp": stamps(stamp, rng, n)}


def accounts(keys, rng, stamp, n_users, deleted_share=0.0):
    n = len(keys)
    return {"Id": sf_ids("001", keys), "Name": numbered("Account ", keys),
            "BillingCountry": labels(COUNTRIES, rng, n), "Industry": labels(INDUSTRIES, rng, n),
            "OwnerId": sf_ids("005", rng.integers(0, n_users, n)), "IsDeleted": rng.random(n) < deleted_share,
            "CreatedDate": np.full(n, STAMP1 - 300 * DAY_US), "SystemModstamp": stamps(stamp, rng, n)}


def opportunities(keys, rng, stamp, n_accounts, n_users, deleted_share=0.0):
    n = len(keys)
    stage = rng.choice(len(STAGES), n, p=STAGE_P)
    cents = rng.integers(100, 20_000_000, n)
    cents[rng.random(n) < 0.02] = 0
    return {"Id": sf_ids("006", keys), "Name": numbered("Deal ", keys),
            "AccountId": with_nulls(sf_ids("001", rng.integers(0, int(n_accounts * 1.02), n)), rng.random(n) < 0.01),
            "OwnerId": with_nulls(sf_ids("005", rng.integers(0, int(n_users * 1.01) + 1, n)), rng.random(n) < 0.005),
            "StageName": pc.take(pa.array(STAGES), pa.array(stage)), "Amount": money(cents, rng.random(n) < 0.01),
            "Probability": STAGE_PROB[stage],
            "CloseDate": with_nulls(pa.array(CLOSE_FROM + rng.integers(0, CLOSE_DAYS, n), pa.int32()).cast(pa.date32()),
                                    rng.random(n) < 0.005),
            "IsClosed": stage >= 4, "IsWon": stage == 4, "CurrencyIsoCode": labels(CURRENCIES, rng, n, CURRENCY_P),
            "IsDeleted": rng.random(n) < deleted_share,
            "CreatedDate": STAMP1 - rng.integers(1, 900, n) * DAY_US, "SystemModstamp": stamps(stamp, rng, n)}


def conversion_rates(rng) -> dict:
    """Monthly back-to-back ranges per currency (CHF only from 2024: earlier dates have no rate),
    rates to 6 decimals as Salesforce keeps them; the last range is open."""
    rows: dict[str, list] = {k: [] for k in ("IsoCode", "ConversionRate", "StartDate", "NextStartDate")}
    for iso, base in RATE_BASE.items():
        months = [date(y, m, 1) for y in range(2022 if iso != "CHF" else 2024, 2027) for m in range(1, 13)]
        months = [d for d in months if d <= date(2026, 7, 1)]
        for i, start in enumerate(months):
            rows["IsoCode"].append(iso)
            rows["ConversionRate"].append(round(base * (1 + rng.normal(0, 0.02)), 6))
            rows["StartDate"].append((start - date(1970, 1, 1)).days)
            nxt = months[i + 1] if i + 1 < len(months) else None
            rows["NextStartDate"].append(None if nxt is None else (nxt - date(1970, 1, 1)).days)
    n = len(rows["IsoCode"])
    return {"Id": sf_ids("04w", np.arange(n)), "IsoCode": pa.array(rows["IsoCode"]),
            "ConversionRate": np.array(rows["ConversionRate"]),
            "StartDate": pa.array(rows["StartDate"], pa.int32()).cast(pa.date32()),
            "NextStartDate": pa.array(rows["NextStartDate"], pa.int32()).cast(pa.date32()),
            "CreatedDate": np.full(n, STAMP1), "SystemModstamp": np.full(n, STAMP1)}


def customers(keys, rng, stamp, n_accounts, deleted_share=0.0):
    n = len(keys)
    deleted = rng.random(n) < deleted_share
    refs = messy_refs(sf_ids("001", rng.integers(0, int(n_accounts * 1.02), n)), rng)
    keep = pa.array(deleted)
    return {"customer_id": keys, "name": with_nulls(numbered("CUSTOMER ", keys), deleted),
            "country": with_nulls(labels(COUNTRIES, rng, n), deleted),
            "sf_account_ref": pc.if_else(keep, pa.scalar(None, pa.string()), refs),
            "created_at": pa.array(STAMP1 - 200 * DAY_US + keys, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "updated_at": stamps(stamp, rng, n), "_deleted": deleted}


def sales_orders(keys, rng, stamp, n_customers, n_opps, deleted_share=0.0):
    n = len(keys)
    deleted = rng.random(n) < deleted_share
    refs = messy_refs(sf_ids("006", rng.integers(0, int(n_opps * 1.01), n)), rng)
    live = ~deleted
    return {"order_id": keys, "customer_id": rng.integers(1, n_customers + 1, n),
            "order_date": with_nulls(pa.array(CLOSE_FROM + rng.integers(0, CLOSE_DAYS, n), pa.int32())
                                     .cast(pa.date32()), deleted),
            "status": with_nulls(labels(np.array(["open", "shipped", "invoiced", "cancelled"]), rng, n), deleted),
            "currency": with_nulls(labels(CURRENCIES, rng, n, CURRENCY_P), deleted),
            "total_amount": money(rng.integers(100, 5_000_000, n), deleted),
            "created_at": with_nulls(pa.array(STAMP1 - 100 * DAY_US + keys, pa.int64())
                                     .cast(pa.timestamp("us", tz="UTC")), deleted),
            "updated_at": stamps(stamp, rng, n),
            "sf_opportunity_ref": pc.if_else(pa.array(live), refs, pa.scalar(None, pa.string())),
            "_deleted": deleted}


def events(lo, n, rng, n_accounts, total):
    """Activity events ``lo .. lo+n``; 1% of them delivered twice (same event_id, later offset)."""
    ids = np.arange(lo, lo + n)
    occurred = STAMP2 + DAY_US // 2 - rng.integers(0, 90 * DAY_US, n)
    acct = rng.integers(0, int(n_accounts * 1.02), n)
    etype = rng.integers(0, len(EVENT_TYPES), n)
    user = rng.integers(0, 20_000, n)
    pick = np.concatenate([np.arange(n), np.flatnonzero(rng.random(n) < 0.01)])
    redelivered = np.arange(len(pick)) >= n
    ids, occurred, acct, etype, user = (a[pick] for a in (ids, occurred, acct, etype, user))
    m = len(pick)
    offset = np.where(redelivered, total + ids, ids)  # a re-delivery sits at a later offset
    return {"event_id": numbered("evt-", ids), "event_type": pc.take(pa.array(EVENT_TYPES), pa.array(etype)),
            "account_id": sf_ids("001", acct), "user_email": numbered("user", user),
            "occurred_at": occurred, "properties": pa.array(["{}"] * m), "_kafka_topic": pa.array(["activity"] * m),
            "_kafka_partition": (ids % 6).astype(np.int32), "_kafka_offset": offset,
            "_kafka_timestamp": pa.array(occurred // 1000, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}


def write(lake: Lake, path: str, ds: str, schema: pa.Schema, batches: Iterator[dict], dataset: str) -> int:
    from tally.sources.erp.extract import writer_options

    rows = 0

    def gen():
        nonlocal rows
        for cols in batches:
            batch = batch_of(schema, cols)
            rows += batch.num_rows
            yield batch

    writer = PartitionWriter(lake, path, ds)
    files = writer.write(schema, gen(), writer_options=writer_options(schema))
    writer.commit(Manifest(dataset=dataset, files=files, row_count=rows))
    return rows


def chunks(keys: np.ndarray) -> Iterator[np.ndarray]:
    for lo in range(0, len(keys), BATCH):
        yield keys[lo:lo + BATCH]


def generate(lake: Lake, n_opps: int, n_events: int, seed: int = 7) -> dict[str, int]:
    """The raw zone: every record in DS1; in DS2 a share of them again with a later cursor (new
    values), some of those as tombstones. Returns raw rows written per dataset."""
    from tally.sources.erp.extract import raw_schema
    from tally.sources.kafka.schema import EVENT_SCHEMA

    rng = np.random.default_rng(seed)
    n_users, n_accounts = max(20, n_opps // 2_500), max(50, n_opps // 25)
    n_customers, n_orders = max(50, n_opps // 50), max(100, n_opps // 5)
    sf, erp = catalog.SALESFORCE, catalog.ERP
    written: dict[str, int] = {}

    def sf_write(name: str, ds: str, batches) -> None:
        written[f"salesforce.{name}@{ds}"] = write(lake, sf[name].lake_path, ds, arrow_schema(sf[name]), batches,
                                                   sf[name].dataset_id)

    def erp_write(name: str, ds: str, batches) -> None:
        written[f"erp.{name}@{ds}"] = write(lake, erp[name].lake_path, ds, raw_schema(erp[name]), batches,
                                            erp[name].dataset_id)

    def sample(n: int, share: float) -> np.ndarray:
        return np.sort(rng.choice(n, max(1, int(n * share)), replace=False))

    sf_write("User", DS1, (users(k, rng, STAMP1) for k in chunks(np.arange(n_users))))
    sf_write("User", DS2, (users(k, rng, STAMP2) for k in chunks(sample(n_users, 0.05))))
    sf_write("Account", DS1, (accounts(k, rng, STAMP1, n_users) for k in chunks(np.arange(n_accounts))))
    sf_write("Account", DS2, (accounts(k, rng, STAMP2, n_users, 0.2) for k in chunks(sample(n_accounts, 0.05))))
    sf_write("Opportunity", DS1,
             (opportunities(k, rng, STAMP1, n_accounts, n_users) for k in chunks(np.arange(n_opps))))
    sf_write("Opportunity", DS2,
             (opportunities(k, rng, STAMP2, n_accounts, n_users, 0.1) for k in chunks(sample(n_opps, 0.1))))
    sf_write("DatedConversionRate", DS1, iter([conversion_rates(rng)]))
    erp_write("customers", DS1, (customers(k, rng, STAMP1, n_accounts) for k in chunks(np.arange(1, n_customers + 1))))
    erp_write("customers", DS2,
              (customers(k + 1, rng, STAMP2, n_accounts, 0.2) for k in chunks(sample(n_customers, 0.03))))
    erp_write("sales_orders", DS1,
              (sales_orders(k, rng, STAMP1, n_customers, n_opps) for k in chunks(np.arange(1, n_orders + 1))))
    erp_write("sales_orders", DS2,
              (sales_orders(k + 1, rng, STAMP2, n_customers, n_opps, 0.15) for k in chunks(sample(n_orders, 0.04))))
    if n_events:
        half = n_events // 2
        for ds, lo, hi in ((DS1, 0, half), (DS2, half, n_events)):
            written[f"kafka.activity@{ds}"] = write(
                lake, EVENTS_PATH, ds, EVENT_SCHEMA,
                (events(a, min(BATCH, hi - a), rng, n_accounts, n_events) for a in range(lo, hi, BATCH)),
                "kafka.activity")
    return written


# -- CPU accounting (Linux /proc; not timed) ----------------------------------------------------
# What the JVM's threads are called (/proc truncates a name to 15 characters).
JVM_THREAD_KINDS = {"Executor task l": "tasks", "C1 CompilerThre": "JIT compilers",
                    "C2 CompilerThre": "JIT compilers", "GC Thread": "GC", "VM Thread": "GC"}
JVM_CPU_KINDS = ("tasks", "JIT compilers", "GC", "driver and other threads")


def _cpu_seconds(stat_line: str) -> float:
    fields = stat_line.rsplit(")", 1)[1].split()  # after "pid (comm)": utime and stime are 12th, 13th
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jvm_cpu(pid: int) -> dict[str, float] | None:
    """CPU seconds the process ``pid`` has used so far, by ``JVM_CPU_KINDS``; None without /proc.
    A thread that has ended counts under the last kind (the process total keeps its time)."""
    try:
        total = _cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    used = dict.fromkeys(JVM_CPU_KINDS, 0.0)
    for thread in threads:
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            name, stat = (thread / "comm").read_text().strip(), (thread / "stat").read_text()
            kind = next((k for prefix, k in JVM_THREAD_KINDS.items() if name.startswith(prefix)), None)
            if kind:
                used[kind] += _cpu_seconds(stat)
    used["driver and other threads"] = max(0.0, total - sum(used.values()))
    return used


def cpu_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """``jvm_cpu`` used between two readings; its parts add up to the process's total."""
    if before is None or after is None:
        return None
    *named, rest = JVM_CPU_KINDS
    delta = {kind: max(0.0, after[kind] - before[kind]) for kind in named}
    delta[rest] = max(0.0, sum(after.values()) - sum(before.values()) - sum(delta.values()))
    return delta


def own_cpu() -> float:
    """CPU seconds this process (DuckDB runs in it) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- Spark -------------------------------------------------------------------------------------
def run_spark(lake_uri: str, reporting: str) -> tuple[float, dict[str, float], dict[str, float] | None]:
    """(session start-up seconds, seconds per job, the JVM's CPU seconds during the jobs by
    ``JVM_CPU_KINDS``, None where unknown) for all_curated in one application."""
    from tally.spark_session import build_session

    began = time.perf_counter()
    spark = build_session(f"tally-bench-spark-transform-{RUN_DS}")
    spark.range(1).count()  # the JVM and the session are up
    startup = time.perf_counter() - began
    try:
        import all_curated

        jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        cpu_before = jvm_cpu(jvm_pid)
        seconds: dict[str, float] = {}
        for job in all_curated.JOBS:
            began = time.perf_counter()
            job.run(spark, lake_uri, RUN_DS, reporting_currency=reporting)
            seconds[job.JOB] = time.perf_counter() - began
        cpu = cpu_delta(cpu_before, jvm_cpu(jvm_pid))
    finally:
        spark.stop()
    return startup, seconds, cpu


# -- DuckDB ------------------------------------------------------------------------------------
def q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def checksum_sql(column: str) -> str:
    """``tally.lake.checksum`` as a DuckDB aggregate: md5's first 64 bits summed modulo 2**64, in hex."""
    part = f"('0x' || substr(md5(CAST({column} AS VARCHAR)), 1, 16))::UBIGINT::HUGEINT"
    return f"printf('%016x', (coalesce(sum({part}), 0) % 18446744073709551616)::UBIGINT)"


class DuckJobs:
    """The four curated jobs in DuckDB SQL, reading the files the lake's manifests list and
    writing one Parquet file per output under ``out``."""

    def __init__(self, lake: Lake, out: Path, reporting: str, threads: int) -> None:
        import duckdb

        self.lake, self.out, self.reporting = lake, out, reporting
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET preserve_insertion_order = false")
        self.counts: dict[str, dict] = {}

    def sql(self, text: str):
        return self.con.execute(text)

    def files(self, path: str) -> list[str]:
        urls = []
        for part_ds in self.lake.committed(path, up_to=RUN_DS):
            urls += [self.lake.path(Lake.partition(path, part_ds), f)
                     for f in self.lake.read_manifest(path, part_ds)["files"]]
        return urls

    def scan(self, path: str, columns: list[str]) -> str:
        files = "[" + ", ".join(q(f) for f in self.files(path)) + "]"
        cols = ", ".join(ident(c) for c in columns)
        return (f"(SELECT {cols}, ds, filename FROM read_parquet({files}, hive_partitioning = true, "
                f"hive_types = {{'ds': VARCHAR}}, filename = true))")

    def live(self, dataset_id: str, view: str) -> None:
        d = catalog.get(dataset_id)
        columns = d.field_names + ([d.deleted_flag] if d.deleted_flag and d.deleted_flag not in d.field_names else [])
        deleted = f"WHERE NOT coalesce({ident(d.deleted_flag)}, false)" if d.deleted_flag else ""
        self.sql(f"""CREATE OR REPLACE TEMP VIEW {view} AS
            SELECT * EXCLUDE (ds, filename) FROM (
              SELECT * FROM {self.scan(d.lake_path, columns)}
              QUALIFY row_number() OVER (PARTITION BY {ident(d.key)}
                ORDER BY {ident(d.cursor)} DESC NULLS LAST, ds DESC, filename DESC) = 1) {deleted}""")

    def output_file(self, name: str) -> Path:
        return self.out / name / f"ds={RUN_DS}" / "part-00000.parquet"

    def write(self, table: str, name: str, counts: dict[str, str], publish: str = "*") -> dict:
        """COPY ``table`` to Parquet; the manifest's row count, key checksum and ``counts``."""
        target = self.output_file(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.sql(f"COPY (SELECT {publish} FROM {table}) TO {q(str(target))} (FORMAT parquet, COMPRESSION snappy)")
        aggs = ["count(*)", checksum_sql(ident(OUTPUTS[name]))] + list(counts.values())
        row = self.sql(f"SELECT {', '.join(aggs)} FROM {table}").fetchone()
        measured = {"row_count": int(row[0]), "key_checksum": row[1]}
        measured.update({k: (int(v) if v is not None else None) for k, v in zip(counts, row[2:], strict=True)})
        self.counts[name] = measured
        return measured

    def read_output(self, name: str) -> str:
        return f"read_parquet({q(str(self.output_file(name)))})"

    # the resolution of hand-typed references (curated_lib.resolve_reference)
    @staticmethod
    def resolve(source: str, ref: str, targets: str, out: str, how: str) -> str:
        return f"""SELECT k.* EXCLUDE (_ref, _rk18, _rk15), coalesce(t18._id, t15._id) AS {out},
              CASE WHEN k._ref IS NULL THEN 'missing_ref'
                   WHEN t18._id IS NOT NULL THEN CASE WHEN k._ref = t18._id THEN 'exact' ELSE 'case_fixed' END
                   WHEN t15._id IS NOT NULL THEN 'expanded_15' ELSE 'unknown' END AS {how}
            FROM (SELECT s.*, nullif(trim({ref}), '') AS _ref,
                         CASE WHEN length(nullif(trim({ref}), '')) = 18 THEN upper(trim({ref})) END AS _rk18,
                         CASE WHEN length(nullif(trim({ref}), '')) = 15 THEN trim({ref}) END AS _rk15
                  FROM {source} s) k
            LEFT JOIN (SELECT upper(id) AS _k, id AS _id FROM {targets}) t18 ON k._rk18 = t18._k
            LEFT JOIN (SELECT substr(id, 1, 15) AS _k, id AS _id FROM {targets}) t15 ON k._rk15 = t15._k"""

    def fx(self, source: str, amount: str, currency: str, day: str) -> str:
        """curated_lib.with_fx: fx_rate and amount_reporting, exact half-up decimal arithmetic."""
        rep = self.reporting
        rep_u = "1000000::BIGINT" if rep == "USD" else "r.rate_u"
        rep_join = "" if rep == "USD" else (
            f"LEFT JOIN (SELECT * FROM d_rates WHERE iso = {q(rep)}) r "
            f"ON r.start <= t._day AND (r.nxt IS NULL OR t._day < r.nxt)")
        src_u = "CASE WHEN t._cur = 'USD' THEN 1000000::BIGINT ELSE s.rate_u END"
        num = f"(CAST(t.{amount} * 1000000000 AS HUGEINT) * {rep_u})"
        den = f"CAST({src_u} AS HUGEINT)"
        half_up = f"sign({num}) * ((abs({num}) * 2 + {den}) // (2 * {den}))"
        return f"""SELECT t.* EXCLUDE (_cur, _day),
              CASE WHEN t._cur = {q(rep)} THEN 1.0::DOUBLE ELSE CAST({rep_u} AS DOUBLE) / CAST({src_u} AS DOUBLE)
              END AS fx_rate,
              CASE WHEN t._cur = {q(rep)} THEN CAST(t.{amount} AS DECIMAL(38,9))
                   ELSE CAST(CAST({half_up} AS DECIMAL(38,0)) * 0.000000001::DECIMAL(10,9) AS DECIMAL(38,9))
              END AS amount_reporting
            FROM (SELECT x.*, upper(trim(x.{currency})) AS _cur, x.{day} AS _day FROM ({source}) x) t
            LEFT JOIN d_rates s ON s.iso = t._cur AND s.start <= t._day AND (s.nxt IS NULL OR t._day < s.nxt)
            {rep_join}"""

    def conformed_customers(self) -> None:
        self.live("erp.customers", "live_customers")
        self.live("salesforce.Account", "live_accounts")
        self.sql(f"""CREATE OR REPLACE TEMP TABLE d_conformed AS
            SELECT CAST(customer_id AS BIGINT) AS customer_id, name AS customer_name, country, sf_account_ref,
                   account_id,
                   CASE WHEN _how = 'unknown' THEN 'unknown_account' ELSE _how END AS resolution,
                   account_id IS NOT NULL AS is_resolved
            FROM ({self.resolve('live_customers', 'sf_account_ref', '(SELECT "Id" AS id FROM live_accounts)',
                                'account_id', '_how')})""")
        self.write("d_conformed", "conformed_customers", {
            **{f"resolution_counts.{r}": f"count_if(resolution = {q(r)})"
               for r in ("exact", "case_fixed", "expanded_15", "missing_ref", "unknown_account")},
            "unresolved": "count_if(NOT is_resolved)"})

    def opportunity_enrichment(self) -> None:
        self.live("salesforce.Opportunity", "live_opps")
        self.live("salesforce.Account", "live_accounts")
        self.live("salesforce.User", "live_users")
        self.live("salesforce.DatedConversionRate", "live_rates")
        self.live("erp.sales_orders", "live_orders")
        self.sql(f"CREATE OR REPLACE TEMP VIEW conformed AS SELECT * FROM {self.read_output('conformed_customers')}")
        self.sql("""CREATE OR REPLACE TEMP TABLE d_rates AS
            WITH cleaned AS (
              SELECT upper(trim("IsoCode")) AS iso, "StartDate" AS start, "NextStartDate" AS nxt,
                     CAST(round("ConversionRate" * 1000000) AS BIGINT) AS rate_u, "SystemModstamp" AS _stamp
              FROM live_rates),
            uniq AS (
              SELECT * FROM cleaned WHERE rate_u > 0 AND iso <> 'USD' AND start IS NOT NULL
              QUALIFY row_number() OVER (PARTITION BY iso, start ORDER BY _stamp DESC NULLS LAST) = 1),
            nexts AS (SELECT *, lead(start) OVER (PARTITION BY iso ORDER BY start) AS fol FROM uniq)
            SELECT iso, start, CASE WHEN nxt IS NULL THEN fol WHEN fol IS NULL THEN nxt ELSE least(nxt, fol) END AS nxt,
                   rate_u
            FROM nexts""")
        self.sql("""CREATE OR REPLACE TEMP TABLE d_base AS
            SELECT o."Id" AS opportunity_id, o."Name" AS opportunity_name, o."AccountId" AS account_id,
                   a."Name" AS account_name, a."BillingCountry" AS billing_country, a."Industry" AS industry,
                   o."OwnerId" AS owner_id, u."Name" AS owner_name, u."Region__c" AS region,
                   o."StageName" AS stage_name, CAST(o."Probability" AS DOUBLE) AS probability,
                   o."CloseDate" AS close_date, o."IsClosed" AS is_closed, o."IsWon" AS is_won,
                   o."CurrencyIsoCode" AS currency_iso_code, CAST(o."Amount" AS DECIMAL(38,9)) AS amount,
                   o."CreatedDate" AS created_date, o."SystemModstamp" AS system_modstamp
            FROM live_opps o LEFT JOIN live_accounts a ON o."AccountId" = a."Id"
            LEFT JOIN live_users u ON o."OwnerId" = u."Id" """)
        linked = self.resolve("live_orders", "sf_opportunity_ref", "(SELECT opportunity_id AS id FROM d_base)",
                              "_opportunity_id", "_ref_how")
        with_account = (f"SELECT l.*, c.account_id AS _account_id FROM ({linked}) l "
                        "LEFT JOIN conformed c ON l.customer_id = c.customer_id")
        self.sql(f"""CREATE OR REPLACE TEMP TABLE d_links AS
            SELECT CAST(order_id AS BIGINT) AS order_id, CAST(customer_id AS BIGINT) AS customer_id,
                   _account_id AS account_id, _opportunity_id AS opportunity_id,
                   CASE WHEN _opportunity_id IS NOT NULL THEN 'opportunity_ref' ELSE 'unlinked' END AS link,
                   order_date, status, currency, CAST(total_amount AS DECIMAL(38,9)) AS total_amount, fx_rate,
                   amount_reporting,
                   CASE WHEN _ref_how = 'unknown' THEN 'unknown_opportunity' ELSE _ref_how END AS _ref_how
            FROM ({self.fx(with_account, 'total_amount', 'currency', 'order_date')})""")
        self.write("d_links", "order_links", {
            **{f"link_counts.{v}": f"count_if(link = {q(v)})" for v in ("opportunity_ref", "unlinked")},
            **{f"unlinked_reasons.{v}": f"count_if(_ref_how = {q(v)})" for v in ("missing_ref", "unknown_opportunity")},
            **{f"ref_resolutions.{v}": f"count_if(_ref_how = {q(v)})" for v in ("exact", "case_fixed", "expanded_15")},
            "fx_missing": "count_if(fx_rate IS NULL)"}, publish="* EXCLUDE (_ref_how)")
        self.sql(f"""CREATE OR REPLACE TEMP TABLE d_opportunities AS
            WITH customer_of AS (
              SELECT account_id, min(customer_id) AS customer_id FROM conformed WHERE is_resolved GROUP BY account_id),
            orders_of AS (
              SELECT opportunity_id, count(*) AS order_count FROM d_links
              WHERE opportunity_id IS NOT NULL GROUP BY opportunity_id),
            converted AS ({self.fx('SELECT * FROM d_base', 'amount', 'currency_iso_code', 'close_date')})
            SELECT c.opportunity_id, opportunity_name, c.account_id, account_name, billing_country, industry,
                   owner_id, owner_name, region, stage_name, probability, close_date, is_closed, is_won,
                   currency_iso_code, amount, fx_rate, {q(self.reporting)} AS reporting_currency, amount_reporting,
                   CAST(co.customer_id AS BIGINT) AS customer_id,
                   CAST(coalesce(oo.order_count, 0) AS INTEGER) AS order_count, created_date, system_modstamp
            FROM converted c LEFT JOIN customer_of co ON c.account_id = co.account_id
            LEFT JOIN orders_of oo ON c.opportunity_id = oo.opportunity_id""")
        self.write("d_opportunities", "opportunities", {
            "fx_missing": "count_if(fx_rate IS NULL)", "with_customer": "count_if(customer_id IS NOT NULL)",
            "with_orders": "count_if(order_count > 0)",
            "unrankable.no_owner": "count_if(owner_id IS NULL)",
            "unrankable.no_close_date": "count_if(owner_id IS NOT NULL AND close_date IS NULL)"})

    def rep_rankings(self) -> None:
        self.sql(f"CREATE OR REPLACE TEMP VIEW opps_out AS SELECT * FROM {self.read_output('opportunities')}")
        self.sql("""CREATE OR REPLACE TEMP TABLE d_rankings AS
            WITH per_owner AS (
              SELECT owner_id, CAST(year(close_date) AS VARCHAR) || '-Q' || CAST(quarter(close_date) AS VARCHAR)
                       AS quarter,
                     max(owner_name) AS owner_name, max(region) AS region, count(*) AS opportunity_count,
                     count_if(coalesce(is_won, false)) AS won_count,
                     count_if(coalesce(is_closed, false)) AS closed_count,
                     sum(CASE WHEN coalesce(is_won, false) AND coalesce(amount <> 0, false)
                              THEN amount_reporting END) AS won_amount,
                     sum(CASE WHEN NOT coalesce(is_closed, false) AND probability BETWEEN 10.0 AND 89.0
                               AND coalesce(amount <> 0, false) THEN amount_reporting END) AS open_pipeline
              FROM opps_out WHERE owner_id IS NOT NULL AND close_date IS NOT NULL
              GROUP BY ALL)
            SELECT concat_ws(':', owner_id, quarter) AS ranking_id, owner_id, owner_name, region, quarter,
                   CAST(opportunity_count AS BIGINT) AS opportunity_count, CAST(won_count AS BIGINT) AS won_count,
                   CAST(closed_count AS BIGINT) AS closed_count, CAST(won_amount AS DECIMAL(38,9)) AS won_amount,
                   CAST(coalesce(open_pipeline, 0) AS DECIMAL(38,9)) AS open_pipeline,
                   CASE WHEN closed_count > 0 THEN won_count / closed_count END AS win_rate,
                   percent_rank() OVER (PARTITION BY region, quarter ORDER BY won_amount ASC NULLS LAST)
                     AS percent_rank,
                   CAST(dense_rank() OVER (PARTITION BY region, quarter ORDER BY won_amount DESC NULLS FIRST)
                     AS INTEGER) AS dense_rank
            FROM per_owner""")
        self.write("d_rankings", "rep_rankings", {})
        for reason in ("no_owner", "no_close_date"):  # counted while writing the opportunities, as in Spark
            self.counts["rep_rankings"][f"skipped.{reason}"] = self.counts["opportunities"][f"unrankable.{reason}"]

    def account_engagement(self) -> None:
        from account_engagement import TYPE_COLUMNS, window_of

        start, end = window_of(RUN_DS)
        self.live("salesforce.Account", "live_accounts")
        self.sql(f"CREATE OR REPLACE TEMP VIEW opps_out AS SELECT * FROM {self.read_output('opportunities')}")
        cols = ["event_id", "event_type", "account_id", "user_email", "occurred_at", "_kafka_partition",
                "_kafka_offset"]
        files = self.files(EVENTS_PATH)
        if files:
            self.sql(f"CREATE OR REPLACE TEMP VIEW raw_events AS SELECT * EXCLUDE (ds, filename) "
                     f"FROM {self.scan(EVENTS_PATH, cols)}")
        else:
            self.sql("CREATE OR REPLACE TEMP VIEW raw_events AS SELECT NULL::VARCHAR AS event_id, "
                     "NULL::VARCHAR AS event_type, NULL::VARCHAR AS account_id, NULL::VARCHAR AS user_email, "
                     "NULL::TIMESTAMPTZ AS occurred_at, NULL::INTEGER AS _kafka_partition, "
                     "NULL::BIGINT AS _kafka_offset WHERE false")
        self.sql("""CREATE OR REPLACE TEMP TABLE d_events AS
            SELECT event_id, account_id, event_type, user_email, occurred_at FROM raw_events
            QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _kafka_partition, _kafka_offset) = 1""")
        recent = (f"occurred_at >= TIMESTAMPTZ {q(start.isoformat())} "
                  f"AND occurred_at < TIMESTAMPTZ {q(end.isoformat())}")
        per_type = ", ".join(f"count_if({recent} AND event_type = {q(t)}) AS {c}" for t, c in TYPE_COLUMNS.items())
        zero = ", ".join(f"CAST(coalesce(u.{c}, 0) AS BIGINT) AS {c}" for c in TYPE_COLUMNS.values())
        self.sql(f"""CREATE OR REPLACE TEMP TABLE d_engagement AS
            WITH usage AS (
              SELECT account_id, count(*) AS events_total, count_if({recent}) AS events_30d,
                     count(DISTINCT CASE WHEN {recent} THEN user_email END) AS distinct_users_30d,
                     max(occurred_at) AS last_event_at, {per_type}
              FROM d_events GROUP BY account_id),
            pipeline AS (
              SELECT account_id, count(*) AS open_opportunities, sum(amount_reporting) AS open_pipeline
              FROM opps_out WHERE NOT coalesce(is_closed, false) AND account_id IS NOT NULL GROUP BY account_id)
            SELECT a."Id" AS account_id, a."Name" AS account_name,
                   CAST(coalesce(u.events_total, 0) AS BIGINT) AS events_total,
                   CAST(coalesce(u.events_30d, 0) AS BIGINT) AS events_30d,
                   CAST(coalesce(u.distinct_users_30d, 0) AS BIGINT) AS distinct_users_30d,
                   u.last_event_at, {zero},
                   CAST(coalesce(p.open_opportunities, 0) AS BIGINT) AS open_opportunities,
                   CAST(coalesce(p.open_pipeline, 0) AS DECIMAL(38,9)) AS open_pipeline_reporting
            FROM live_accounts a LEFT JOIN usage u ON a."Id" = u.account_id
            LEFT JOIN pipeline p ON a."Id" = p.account_id""")
        read = self.sql("SELECT count(*) FROM raw_events").fetchone()[0]
        distinct = self.sql("SELECT count(*) FROM d_events").fetchone()[0]
        self.write("d_engagement", "account_engagement", {"events.events_matched": "sum(events_total)"})
        matched = self.counts["account_engagement"]["events.events_matched"] or 0
        self.counts["account_engagement"].update({
            "events.events_read": read, "events.duplicate_events": read - distinct,
            "events.events_distinct": distinct, "events.events_unmatched_account": distinct - matched})

    def run(self) -> dict[str, float]:
        seconds = {}
        for job in JOBS:
            began = time.perf_counter()
            getattr(self, job)()
            seconds[job] = time.perf_counter() - began
        self.con.close()
        return seconds


# -- comparing the outputs (not timed) ----------------------------------------------------------
def flat(manifest: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in manifest.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare(lake: Lake, duck: DuckJobs, console: Console) -> list[str]:
    import duckdb

    problems: list[str] = []
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    table = Table(title="Spark and DuckDB outputs compared (not timed)")
    for col in ("output", "rows", "key checksum", "manifest counts", "schema", "rows only in Spark / DuckDB",
                "aggregate (Spark = DuckDB)"):
        table.add_column(col)
    for name in OUTPUTS:
        path = f"curated/{name}"
        manifest = lake.read_manifest(path, RUN_DS) or {}
        spark_files = "[" + ", ".join(q(f) for f in lake.files(path, RUN_DS)) + "]"
        duck_file = q(str(duck.output_file(name)))
        s, d = f"read_parquet({spark_files})", f"read_parquet({duck_file})"
        mine = duck.counts[name]
        theirs = flat(manifest)
        count_keys = [k for k in mine if k not in ("row_count", "key_checksum")]
        counts_ok = all(theirs.get(k) == mine[k] for k in count_keys)
        s_schema = pq.read_schema(lake.files(path, RUN_DS)[0], filesystem=lake.fs)
        d_schema = pq.read_schema(str(duck.output_file(name)))
        schema_ok = [(f.name, f.type) for f in s_schema] == [(f.name, f.type) for f in d_schema]
        only_s = con.execute(f"SELECT count(*) FROM (SELECT * FROM {s} EXCEPT ALL SELECT * FROM {d})").fetchone()[0]
        only_d = con.execute(f"SELECT count(*) FROM (SELECT * FROM {d} EXCEPT ALL SELECT * FROM {s})").fetchone()[0]
        if name in ("opportunities", "order_links"):
            agg = "sum(amount_reporting)"
            sv, dv = (con.execute(f"SELECT {agg} FROM {x}").fetchone()[0] for x in (s, d))
        elif name == "rep_rankings":
            agg = "count by dense_rank"
            sv, dv = (con.execute(f"SELECT list(n ORDER BY r) FROM (SELECT dense_rank r, count(*) n FROM {x} "
                                  "GROUP BY 1)").fetchone()[0] for x in (s, d))
        elif name == "account_engagement":
            agg = "sum(events_total), sum(open_pipeline_reporting)"
            sv, dv = (con.execute(f"SELECT sum(events_total), sum(open_pipeline_reporting) FROM {x}").fetchone()
                      for x in (s, d))
        else:
            agg = "count by resolution"
            sv, dv = (con.execute(f"SELECT list(n ORDER BY r) FROM (SELECT resolution r, count(*) n FROM {x} "
                                  "GROUP BY 1)").fetchone()[0] for x in (s, d))
        checks = {
            "rows": manifest.get("row_count") == mine["row_count"],
            "key checksum": manifest.get("key_checksum") == mine["key_checksum"],
            "manifest counts": counts_ok, "schema": schema_ok, "rows differ": only_s == 0 and only_d == 0,
            "aggregate": sv == dv,
        }
        problems += [f"{name}: {what}" for what, ok in checks.items() if not ok]
        if not counts_ok:
            problems.append(f"{name}: counts spark={ {k: theirs.get(k) for k in count_keys} } duckdb="
                            f"{ {k: mine[k] for k in count_keys} }")

        def mark(ok: bool, text: str = "") -> str:
            return f"[green]✓[/] {text}" if ok else f"[red]✗[/] {text}"

        shown = str(sv)[:40] + ("…" if len(str(sv)) > 40 else "")
        table.add_row(name, mark(checks["rows"], f"{mine['row_count']:,}"), mark(checks["key checksum"]),
                      mark(counts_ok, f"{len(count_keys)}"), mark(schema_ok), mark(checks["rows differ"],
                                                                                    f"{only_s} / {only_d}"),
                      mark(checks["aggregate"], f"{agg}: {shown}"))
    con.close()
    console.print(table)
    return problems


# -- main --------------------------------------------------------------------------------------
@contextlib.contextmanager
def scratch(keep: str | None) -> Iterator[Path]:
    if keep:
        root = Path(keep)
        root.mkdir(parents=True, exist_ok=True)
        yield root
        return
    root = Path(tempfile.mkdtemp(prefix="tally-bench-spark-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=5_000_000, help="live opportunity keys (default 5M)")
    parser.add_argument("--events", type=int, default=None,
                        help="activity events (default: opportunities / 2; 0 for none)")
    parser.add_argument("--reporting-currency", default="USD")
    parser.add_argument("--threads", type=int, default=None,
                        help="DuckDB threads (default: the cores Spark's local[*] uses)")
    parser.add_argument("--keep", default=None, help="generate into (and keep) this folder instead of a temp one")
    args = parser.parse_args()
    n_events = args.opportunities // 2 if args.events is None else args.events

    from tally.spark_session import machine_cores

    threads = args.threads or machine_cores()
    console = Console(width=None if sys.stdout.isatty() else 150)
    with scratch(args.keep) as root:
        lake = Lake(str(root / "lake"))
        began = time.perf_counter()
        with console.status(f"generating the raw zone: {args.opportunities:,} opportunities, {n_events:,} events"):
            written = generate(lake, args.opportunities, n_events)
        console.print(f"raw zone: {sum(written.values()):,} rows in {len(written)} partitions "
                      f"({time.perf_counter() - began:.1f} s, not timed)")

        with console.status("Spark: all_curated in one application"):
            startup, spark_s, spark_cpu = run_spark(lake.uri, args.reporting_currency)
        console.print(f"Spark done: {sum(spark_s.values()):.1f} s (+ {startup:.1f} s session start-up)")
        with console.status("DuckDB: the same four jobs"):
            duck = DuckJobs(lake, root / "duckdb", args.reporting_currency, threads)
            cpu_before = own_cpu()
            duck_s = duck.run()
            duck_cpu = own_cpu() - cpu_before
        console.print(f"DuckDB done: {sum(duck_s.values()):.1f} s")
        problems = compare(lake, duck, console)

    table = Table(title=f"Curated jobs at {args.opportunities:,} opportunities, {n_events:,} events "
                        f"(Spark local[*] = {threads} cores, DuckDB {threads} threads)")
    for col in ("job", "Spark s", "DuckDB s", "Spark ÷ DuckDB"):
        table.add_column(col, justify="left" if col == "job" else "right")
    for job in JOBS:
        table.add_row(job, f"{spark_s[job]:.2f}", f"{duck_s[job]:.2f}", f"{spark_s[job] / duck_s[job]:.1f}")
    total_s, total_d = sum(spark_s.values()), sum(duck_s.values())
    table.add_row("[b]all four[/]", f"[b]{total_s:.2f}[/]", f"[b]{total_d:.2f}[/]", f"[b]{total_s / total_d:.2f}[/]")
    table.add_row("Spark session start-up (not in the ratio)", f"{startup:.2f}", "–", "")
    console.print(table)
    if spark_cpu is not None:
        parts = " + ".join(f"{kind} {spark_cpu[kind]:.1f}" for kind in JVM_CPU_KINDS)
        console.print(f"CPU seconds during the four jobs: Spark {sum(spark_cpu.values()):.1f} ({parts}); "
                      f"DuckDB {duck_cpu:.1f}")
    console.print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    for problem in problems:
        console.print(f"[red]MISMATCH[/] {problem}")
    print(f"spark_transform: duckdb_ratio={total_s / total_d:.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
