"""spark_jobs/rep_rankings.py against a small raw lake, checked by an independent Python model.

The raw lake covers: two versions of an opportunity across two ds, a tie on SystemModstamp
(greater ds wins), a deleted opportunity and a deleted account, an opportunity whose owner is
missing and one whose account is missing, ties in won_amount, a null region, a rep with no
opportunities, a won opportunity with a null amount, a committed ds after the run's ds, an
uncommitted ds, and a stray file not listed in its manifest (all three must be ignored).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tally import catalog
from tally.checksum import checksum, key_hash
from tally.lake import MANIFEST, Lake, arrow_schema, schema_fingerprint
from tally.spark_session import spark_env, spark_submit_bin

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB_PATH = REPO / "spark_jobs" / "rep_rankings.py"
DS1, DS2, DS3 = "2024-01-01", "2024-01-02", "2024-01-03"
UNCOMMITTED = "2023-12-31"


def _load_job():
    spec = importlib.util.spec_from_file_location("tally_job_rep_rankings", JOB_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = _load_job()


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def usr(i, name, region, ts):
    return {
        "Id": f"005{i:015d}",
        "Name": name,
        "Email": f"{name.lower()}@x.test",
        "IsActive": True,
        "Region__c": region,
        "CreatedDate": t(1),
        "SystemModstamp": ts,
    }


def acc(i, name, country, ts, deleted=False):
    return {
        "Id": f"001{i:015d}",
        "Name": name,
        "BillingCountry": country,
        "Industry": "Tech",
        "OwnerId": None,
        "IsDeleted": deleted,
        "CreatedDate": t(1),
        "SystemModstamp": ts,
    }


def opp(i, acct, owner, stage, amount, closed, won, ts, deleted=False):
    return {
        "Id": f"006{i:015d}",
        "Name": f"Deal {i}",
        "AccountId": acct and f"001{acct:015d}",
        "OwnerId": owner and f"005{owner:015d}",
        "StageName": stage,
        "Amount": None if amount is None else Decimal(amount),
        "Probability": 100.0 if won else 10.0,
        "CloseDate": date(2024, 2, i),
        "IsClosed": closed,
        "IsWon": won,
        "IsDeleted": deleted,
        "CreatedDate": t(1),
        "SystemModstamp": ts,
    }


# Committed raw data: {object: {ds: rows}}
RAW: dict[str, dict[str, list[dict]]] = {
    "User": {
        DS1: [
            usr(1, "Alice", "EMEA", t(1)),
            usr(2, "Bob", "EMEA", t(1)),
            usr(3, "Carol", "EMEA", t(1)),
            usr(4, "Dan", None, t(1)),
            usr(5, "Erin", "AMER", t(1)),
            usr(6, "Frank", "APAC", t(1)),
        ],
        # Erin moves to a null region (and has no opportunities); Bob ties on SystemModstamp.
        DS2: [usr(5, "Erin", None, t(2)), usr(2, "Bob B.", "EMEA", t(1))],
        DS3: [usr(1, "Alice", "AMER", t(3))],
    },
    "Account": {
        DS1: [acc(1, "Acme", "DE", t(1)), acc(2, "Globex", "US", t(1)), acc(3, "Initech", "FR", t(1))],
        DS2: [acc(3, "Initech", "FR", t(2), deleted=True), acc(2, "Globex Corp", "US", t(2))],
        DS3: [],  # an empty (typed) partition
    },
    "Opportunity": {
        DS1: [
            opp(1, 1, 1, "Prospecting", "100", False, False, t(1)),
            opp(2, 2, 2, "Closed Won", "200", True, True, t(1)),
            opp(3, 1, 3, "Closed Won", "50", True, True, t(1)),
            opp(4, 1, 999, "Closed Won", "75", True, True, t(1)),  # owner missing
            opp(5, 3, 4, "Closed Lost", "30", True, False, t(1)),  # account deleted later
            opp(6, 42, 4, "Negotiation", "40.5", False, False, t(1)),  # account missing
        ],
        DS2: [
            opp(1, 1, 1, "Closed Won", "150", True, True, t(2)),  # second version
            opp(2, 2, 2, "Closed Won", "150", True, True, t(1)),  # same modstamp: ds2 wins
            opp(3, 1, 3, "Closed Won", "50", True, True, t(2), deleted=True),
            opp(7, 2, 3, "Closed Won", None, True, True, t(2)),  # won, amount unknown
            opp(8, 1, 6, "Closed Won", "10.123456789", True, True, t(2)),
            opp(9, None, None, "Prospecting", "5", False, False, t(2)),  # no account, no owner
        ],
        DS3: [
            opp(1, 1, 1, "Closed Won", "999", True, True, t(3)),
            opp(3, 1, 3, "Closed Won", "50", True, True, t(3), deleted=False),  # undeleted
        ],
    },
}
# Never visible: an uncommitted ds, and a stray file in a committed ds not in its manifest.
NOISE = {
    "uncommitted": [opp(1, 1, 1, "Closed Won", "1000000", True, True, t(9, 9))],
    "stray": [opp(20, 1, 1, "Closed Won", "1", True, True, t(1))],
}


# -- building the raw lake ------------------------------------------------------------------
def write_raw(lake: Lake, name: str, ds: str, rows: list[dict], commit: bool = True) -> None:
    dataset = catalog.SALESFORCE[name]
    schema = arrow_schema(dataset)
    lake.clear_partition(dataset.lake_path, ds)
    batches = [pa.RecordBatch.from_pylist(rows, schema=schema)] if rows else []
    files = sorted({f for f, _ in lake.write_batches(dataset.lake_path, ds, schema, batches)})
    if commit:
        lake.write_manifest(
            dataset.lake_path,
            ds,
            {
                "dataset": dataset.dataset_id,
                "files": files,
                "row_count": len(rows),
                "key": dataset.key,
                "key_checksum": checksum(r["Id"] for r in rows),
                "schema_fingerprint": schema_fingerprint(schema),
            },
        )


@pytest.fixture(scope="module")
def raw_lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(str(root))
    for name, parts in RAW.items():
        for ds, rows in parts.items():
            write_raw(lake, name, ds, rows)
    write_raw(lake, "Opportunity", UNCOMMITTED, NOISE["uncommitted"], commit=False)
    stray = lake.path(Lake.partition(catalog.SALESFORCE["Opportunity"].lake_path, DS1), "part-99999.parquet")
    pq.write_table(
        pa.Table.from_pylist(NOISE["stray"], schema=arrow_schema(catalog.SALESFORCE["Opportunity"])), stray
    )
    return root


# -- the independent model ------------------------------------------------------------------
def latest_live(name: str, run_ds: str) -> dict[str, dict]:
    dataset = catalog.SALESFORCE[name]
    best: dict[str, tuple] = {}
    for ds, rows in RAW[name].items():
        if ds > run_ds:
            continue
        for row in rows:
            rank = (row[dataset.cursor], ds)
            if row["Id"] not in best or rank > best[row["Id"]][0]:
                best[row["Id"]] = (rank, row)
    flag = dataset.deleted_flag
    return {k: row for k, (_, row) in best.items() if not (flag and row[flag])}


def expected(run_ds: str) -> tuple[dict[str, dict], dict[str, dict]]:
    users, accounts, opps = (latest_live(n, run_ds) for n in ("User", "Account", "Opportunity"))
    opportunities = {}
    for o in opps.values():
        a, u = accounts.get(o["AccountId"], {}), users.get(o["OwnerId"], {})
        opportunities[o["Id"]] = {
            "opportunity_id": o["Id"],
            "opportunity_name": o["Name"],
            "account_id": o["AccountId"],
            "account_name": a.get("Name"),
            "billing_country": a.get("BillingCountry"),
            "owner_id": o["OwnerId"],
            "owner_name": u.get("Name"),
            "region": u.get("Region__c"),
            "stage_name": o["StageName"],
            "amount": o["Amount"],
            "probability": o["Probability"],
            "close_date": o["CloseDate"],
            "is_closed": o["IsClosed"],
            "is_won": o["IsWon"],
            "created_date": o["CreatedDate"],
            "system_modstamp": o["SystemModstamp"],
        }
    reps = {}
    for u in users.values():
        mine = [o for o in opportunities.values() if o["owner_id"] == u["Id"]]
        reps[u["Id"]] = {
            "owner_id": u["Id"],
            "owner_name": u["Name"],
            "region": u["Region__c"],
            "won_amount": sum((o["amount"] or 0 for o in mine if o["is_won"]), Decimal(0)),
            "won_count": sum(1 for o in mine if o["is_won"]),
            "closed_count": sum(1 for o in mine if o["is_closed"]),
            "open_pipeline": sum((o["amount"] or 0 for o in mine if not o["is_closed"]), Decimal(0)),
            "opportunity_count": len(mine),
        }
    for rep in reps.values():  # PERCENT_RANK as PostgreSQL defines it
        peers = [r["won_amount"] for r in reps.values() if r["region"] == rep["region"]]
        below = sum(1 for w in peers if w < rep["won_amount"])
        rep["percent_rank"] = below / (len(peers) - 1) if len(peers) > 1 else 0.0
    return opportunities, reps


def test_model_covers_the_cases():
    opps, reps = expected(DS2)
    assert opps["006000000000000001"]["amount"] == Decimal("150")  # second version
    assert opps["006000000000000002"]["amount"] == Decimal("150")  # modstamp tie -> ds2
    assert "006000000000000003" not in opps  # deleted
    assert opps["006000000000000004"]["owner_name"] is None  # owner missing
    assert opps["006000000000000005"]["account_name"] is None  # account deleted
    assert opps["006000000000000006"]["account_name"] is None  # account missing
    assert reps["005000000000000001"]["won_amount"] == reps["005000000000000002"]["won_amount"]
    assert reps["005000000000000005"] == {
        **reps["005000000000000005"],
        "region": None,
        "opportunity_count": 0,
    }
    assert sorted(r["percent_rank"] for r in reps.values() if r["region"] == "EMEA") == [0.0, 0.5, 0.5]
    assert any(key_hash(k) >= 2**63 for k in opps) and any(key_hash(k) >= 2**63 for k in reps)


# -- checking outputs -------------------------------------------------------------------------
def read_curated(lake: Lake, path: str, ds: str, key: str) -> tuple[dict[str, dict], dict, pa.Schema]:
    manifest = lake.read_manifest(path, ds)
    assert manifest is not None, f"{path} ds={ds} not committed"
    table = lake.read_table(path, ds)
    rows = table.to_pylist()
    by_key = {r[key]: r for r in rows}
    assert len(by_key) == len(rows), "duplicate keys"
    return by_key, manifest, table.schema


def assert_outputs(lake_root: Path, run_ds: str) -> None:
    lake = Lake(str(lake_root))
    want_opps, want_reps = expected(run_ds)
    raw_inputs = {f"salesforce.{n}": sorted(d for d in RAW[n] if d <= run_ds) for n in RAW}

    opps, manifest, schema = read_curated(lake, job.OPPORTUNITIES, run_ds, "opportunity_id")
    assert opps == want_opps
    assert schema.names == list(next(iter(want_opps.values())))
    assert schema.field("amount").type == pa.decimal128(38, 9)
    assert schema.field("created_date").type == pa.timestamp("us", tz="UTC")
    assert schema.field("close_date").type == pa.date32()
    assert manifest["dataset"] == "curated.opportunities" and manifest["key"] == "opportunity_id"
    assert manifest["row_count"] == len(want_opps)
    assert manifest["key_checksum"] == checksum(want_opps)
    assert manifest["schema_fingerprint"] == schema_fingerprint(schema)
    assert manifest["inputs"] == raw_inputs

    reps, manifest, schema = read_curated(lake, job.REP_RANKINGS, run_ds, "owner_id")
    assert schema.names == [
        "owner_id",
        "owner_name",
        "region",
        "won_amount",
        "won_count",
        "closed_count",
        "open_pipeline",
        "opportunity_count",
        "percent_rank",
    ]
    assert schema.field("won_amount").type == pa.decimal128(38, 9)
    assert schema.field("open_pipeline").type == pa.decimal128(38, 9)
    assert schema.field("won_count").type == pa.int64()
    assert reps.keys() == want_reps.keys()
    for key, want in want_reps.items():
        got = reps[key]
        assert got["percent_rank"] == pytest.approx(want["percent_rank"]), key
        assert {**got, "percent_rank": None} == {**want, "percent_rank": None}, key
    assert manifest["dataset"] == "curated.rep_rankings" and manifest["key"] == "owner_id"
    assert manifest["row_count"] == len(want_reps)
    assert manifest["key_checksum"] == checksum(want_reps)
    assert manifest["schema_fingerprint"] == schema_fingerprint(schema)
    assert manifest["inputs"] == {
        "salesforce.User": raw_inputs["salesforce.User"],
        "curated.opportunities": [run_ds],
    }

    for path in (job.OPPORTUNITIES, job.REP_RANKINGS):  # only parquet + manifest, all listed
        part = lake_root / Lake.partition(path, run_ds)
        listed = lake.read_manifest(path, run_ds)["files"]
        assert sorted(p.name for p in part.iterdir()) == sorted([*listed, MANIFEST])
        assert listed and all(f.endswith(".parquet") for f in listed)


# -- the tests --------------------------------------------------------------------------------
def test_job_in_process_and_rerun_replaces(spark, raw_lake):
    summary = job.run(spark, str(raw_lake), DS2)
    want_opps, want_reps = expected(DS2)
    assert summary["rows"] == {
        "curated.opportunities": len(want_opps),
        "curated.rep_rankings": len(want_reps),
    }
    assert_outputs(raw_lake, DS2)
    first_files = Lake(str(raw_lake)).read_manifest(job.OPPORTUNITIES, DS2)["files"]

    job.run(spark, f"file://{raw_lake}", DS2)  # same ds again, as a file:// URI
    assert_outputs(raw_lake, DS2)  # no duplicates, and no leftover files from the first run
    assert not set(first_files) & set(Lake(str(raw_lake)).read_manifest(job.OPPORTUNITIES, DS2)["files"])

    job.run(spark, str(raw_lake), DS1)  # an earlier ds sees only its own history
    assert_outputs(raw_lake, DS1)
    assert_outputs(raw_lake, DS2)  # untouched


def test_s3_without_hadoop_aws_fails_at_once(spark, capsys):
    with pytest.raises(job.JobError, match="hadoop-aws"):
        job.run(spark, "s3://no-such-bucket/lake", DS2)
    assert job.main(["--lake", "s3://no-such-bucket/lake", "--ds", DS2]) == 2
    assert "Spark cannot read s3a:// without hadoop-aws on its classpath" in capsys.readouterr().err
    assert not spark.sparkContext._jsc.sc().isStopped()  # main left the caller's session alone


def test_job_through_spark_submit(raw_lake):
    cmd = [spark_submit_bin(), "--master", "local[2]", str(JOB_PATH), "--lake", str(raw_lake), "--ds", DS3]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=spark_env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    want_opps, want_reps = expected(DS3)
    assert summary["rows"] == {
        "curated.opportunities": len(want_opps),
        "curated.rep_rankings": len(want_reps),
    }
    assert summary["ds"] == DS3
    assert_outputs(raw_lake, DS3)
    print(f"\nspark-submit rep_rankings end to end: {elapsed:.1f}s (job body {summary['seconds']}s)")
    if os.environ.get("TALLY_TIMINGS"):
        Path(os.environ["TALLY_TIMINGS"]).write_text(f"{elapsed:.2f} {summary['seconds']}\n")
