"""The state zone (tally.lake.state, spark_jobs/curated_lib.state_for): ``live`` built
incrementally from the previous ds's state plus the day's raw delta equals, ds by ds, the
from-scratch ``latest_live(read_raw(...))`` over every raw partition, through inserts, updates,
tombstones, late versions with older cursors, equal cursors in different ds, NULL cursors,
several files per ds, days without a partition, and re-runs of old ds after later states were
built (which make those states stale: they are found and rebuilt, never used)."""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime, timedelta

import curated_world as w
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from tally import catalog
from tally.lake import Lake, Manifest, PartitionWriter, commit_id, stale_states, state_path
from tally.lake.checksum import checksum
from tally.lake.state import consumed_ids
from tally.lake.writer import remove_partition

pytestmark = pytest.mark.integration

DATASET = catalog.ERP["customers"]
STATE = state_path(DATASET)
# the raw columns, every one nullable (a NULL cursor must sort last, as in latest_live)
SCHEMA = pa.schema([pa.field("customer_id", pa.int64()), pa.field("name", pa.string()),
                    pa.field("country", pa.string()), pa.field("sf_account_ref", pa.string()),
                    pa.field("created_at", pa.timestamp("us", tz="UTC")),
                    pa.field("updated_at", pa.timestamp("us", tz="UTC")), pa.field("_deleted", pa.bool_())])
KEYS = range(1, 9)
DAYS = 32
START = date(2026, 11, 1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lib():
    return w.load_job("curated_lib")


class RawHistory:
    """Random raw partitions of erp.customers, one ds at a time, committed like an extractor
    commits them (PartitionWriter, several files per ds, each key at most once per file)."""

    def __init__(self, lake: Lake, seed: int) -> None:
        self.lake, self.rng, self.clock, self.n = lake, random.Random(seed), T0, 0
        self.cursors: dict[int, list[datetime]] = {k: [] for k in KEYS}

    def _cursor(self, key: int) -> datetime | None:
        roll = self.rng.random()
        if roll < 0.05:
            return None  # no cursor: loses to every version that has one
        if roll < 0.2 and self.cursors[key]:
            return self.rng.choice(self.cursors[key])  # equal cursor: the later ds (then file) wins
        if roll < 0.35:
            return T0 + timedelta(minutes=self.rng.randrange(0, max(1, self.n)))  # late: an older cursor
        self.clock += timedelta(minutes=self.rng.randrange(1, 4))  # an update moves the cursor on
        return self.clock

    def rows(self) -> list[list[dict]]:
        files = []
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            rows = []
            for key in self.rng.sample(list(KEYS), self.rng.randrange(0, 5)):
                self.n += 1
                cursor = self._cursor(key)
                if cursor is not None:
                    self.cursors[key].append(cursor)
                deleted = self.rng.random() < 0.2  # a tombstone
                rows.append({"customer_id": key, "name": f"v{self.n}", "country": self.rng.choice(("DE", "FR")),
                             "sf_account_ref": None, "created_at": T0, "updated_at": cursor,
                             "_deleted": None if self.rng.random() < 0.05 else deleted})
            files.append(rows)
        return files

    def commit(self, ds: str) -> None:
        files = self.rows()
        writer = PartitionWriter(self.lake, DATASET.lake_path, ds)
        for rows in files:  # one file per list (a file per write_batches call)
            writer.write(SCHEMA, [pa.RecordBatch.from_pylist(rows, schema=SCHEMA)] if rows else [])
        keys = [r["customer_id"] for rows in files for r in rows]
        writer.commit(Manifest(dataset=DATASET.dataset_id, key=DATASET.key, files=list(writer.files),
                               row_count=len(keys), key_checksum=checksum(keys)))


def check_day(spark, lake: Lake, ds: str) -> dict:
    """``live`` (incremental, through the state) and the from-scratch rule, collected in one
    action and compared; the state's manifest must record the raw commits it reflects."""
    cl = lib()
    inputs: dict[str, list[str]] = {}
    incremental = cl.live(spark, lake, DATASET.dataset_id, ds, inputs)
    raw, parts = cl.read_raw(spark, lake, DATASET, ds)
    scratch = cl.latest_live(raw, DATASET)
    both = incremental.withColumn("_side", F.lit(0)).unionByName(scratch.withColumn("_side", F.lit(1))).collect()
    got = sorted(tuple(r)[:-1] for r in both if r["_side"] == 0)
    want = sorted(tuple(r)[:-1] for r in both if r["_side"] == 1)
    assert got == want, f"ds={ds}: incremental live differs from the full rule"
    # the curated gate's own expectation (pure Python, from the newest valid earlier state + raw) agrees
    from tally.gates.curated import live_records

    assert sorted((k, r["name"]) for k, r in live_records(lake, DATASET.dataset_id, ds, ("name",)).items()) == \
        sorted((r[0], r[1]) for r in want), f"ds={ds}: the curated gate's live records differ"
    manifest = lake.read_manifest(STATE, ds)
    assert inputs[DATASET.dataset_id] == parts
    assert manifest["consumed"] == consumed_ids(lake, DATASET, ds)
    assert manifest["live_rows"] == len(want) and manifest["row_count"] >= len(want)
    return manifest


@pytest.fixture
def small_spark(spark):
    """The session with one input split and one shuffle partition (kilobytes of data: Spark's
    per-task overhead is the cost), restored afterwards."""
    conf = {"spark.sql.files.minPartitionNum": "1", "spark.sql.shuffle.partitions": "1"}
    before = {k: spark.conf.get(k, None) for k in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    yield spark
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


# One 32-day history takes about a minute (Spark actions dominate); more seeds on demand:
# TALLY_STATE_SEEDS=7,11,2026 .venv/bin/pytest tests/integration/test_spark_state.py
SEEDS = [int(s) for s in os.environ.get("TALLY_STATE_SEEDS", "7").split(",") if s.strip()]


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_live_equals_the_full_rule_every_day(small_spark, tmp_path, seed):
    spark = small_spark
    lake = Lake(str(tmp_path / "lake"))
    history = RawHistory(lake, seed)
    rng = random.Random(seed + 1)
    days = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]
    reruns = {10: "recommit", 19: "recommit", 27: "uncommit"}
    built: list[str] = []
    modes = []
    for i, ds in enumerate(days):
        if rng.random() < 0.85:  # some days land nothing
            history.commit(ds)
        stale = {d for d, _ in stale_states(lake, DATASET)}
        manifest = check_day(spark, lake, ds)
        built.append(ds)
        modes.append(manifest["mode"])
        if i > 0 and days[i - 1] not in stale:
            # a day's build reads yesterday's state and today's partition only
            assert (manifest["mode"], manifest["base"]) == ("incremental", days[i - 1])
            assert manifest["base_commit"] == commit_id(lake.read_manifest(STATE, days[i - 1]))
            assert set(manifest["delta"]) == set(lake.committed(DATASET.lake_path, up_to=ds)) & {ds}
        if i in reruns:  # an old ds re-run after later states were built
            recent = days[i - 5:i]
            landed = [d for d in recent if d in lake.committed(DATASET.lake_path)]
            already = {d for d, _ in stale_states(lake, DATASET)}  # left by an earlier re-run
            if reruns[i] == "uncommit" and landed:
                old = rng.choice(landed)
                remove_partition(lake, DATASET.lake_path, old)
            else:
                old = rng.choice(recent)
                history.commit(old)
            assert [d for d, _ in stale_states(lake, DATASET)] == sorted(already | {d for d in built if d >= old})
            again = days[rng.randrange(days.index(old), i + 1)]
            rebuilt = check_day(spark, lake, again)  # re-running a later ds rebuilds it exactly
            assert rebuilt["rebuilt_because"].startswith(f"state ds={again} is stale: raw ds={old}")
            assert rebuilt["base"] is None or rebuilt["base"] < old
            assert set(rebuilt["delta"]) == {d for d in rebuilt["consumed"] if rebuilt["base"] is None
                                             or d > rebuilt["base"]}
    assert modes[0] == "full" and modes.count("incremental") >= DAYS - 1
    for ds, _ in stale_states(lake, DATASET):  # the states left stale by the re-runs, rebuilt in order
        assert check_day(spark, lake, ds)["mode"] == "incremental"
    assert stale_states(lake, DATASET) == []


def test_state_is_reused_not_rebuilt_and_full_refresh_rebuilds_it(spark, tmp_path, monkeypatch):
    """A second ``live`` of a dataset and ds (another job, a re-run) reads the committed state; a
    full refresh (argument, ``--full-refresh`` or $TALLY_FULL_REFRESH) rebuilds it from all raw
    once per process; a concurrent builder that finds the same state committed keeps it."""
    cl = lib()
    root = tmp_path / "lake"
    lake = w.build_lake(root)
    account = catalog.get("salesforce.Account")
    path = state_path(account)
    for job in ("conformed_customers", "opportunity_enrichment"):  # both read salesforce.Account
        w.load_job(job).run(spark, str(root), w.DS1)
        if job == "conformed_customers":
            first = lake.read_manifest(path, w.DS1)
    assert lake.read_manifest(path, w.DS1).committed_at == first.committed_at  # reused
    for job in ("conformed_customers", "opportunity_enrichment"):
        w.load_job(job).run(spark, str(root), w.RUN_DS)
    day2 = lake.read_manifest(path, w.RUN_DS)
    assert (day2.mode, day2["base"], sorted(day2["delta"]), day2["rebuilt_because"]) == (
        "incremental", w.DS1, [w.DS2], None)
    assert day2["live_rows"] == len(w.latest_live("salesforce.Account")) and day2.row_count == 5  # a tombstone kept

    monkeypatch.setattr(cl, "_REFRESHED", set())
    monkeypatch.setenv(cl.FULL_REFRESH_ENV, "1")
    _, refreshed = cl.state_for(spark, lake, account, w.RUN_DS)
    assert (refreshed.mode, refreshed["base"], refreshed["rebuilt_because"]) == ("full", None, "full refresh requested")
    assert (refreshed.row_count, refreshed.key_checksum) == (day2.row_count, day2.key_checksum)
    assert cl.state_for(spark, lake, account, w.RUN_DS)[1].committed_at == refreshed.committed_at  # once per process
    monkeypatch.delenv(cl.FULL_REFRESH_ENV)
    assert cl.full_refresh_requested() is False
    args = cl.parse_args("x", "", ["--lake", "l", "--ds", w.RUN_DS, "--full-refresh"])
    assert args.full_refresh is True

    # a concurrent builder of the same ds that lost the race: the committed state stays, whole
    before = lake.read_manifest(path, w.RUN_DS)
    kept, mine = cl._build_state(spark, lake, account, w.RUN_DS, w.DS1, [w.DS2], rebuilt_because=None,
                                 replace=False, rows_per_file=cl.ROWS_PER_FILE)
    assert kept.committed_at == before.committed_at and not mine
    folder = lake.path(Lake.partition(path, w.RUN_DS))
    assert sorted(os.listdir(folder)) == sorted([*before.files, "_manifest.json"])
    assert lake.verify(path, w.RUN_DS).row_count == 5
