"""`tally lake compact|prune` through the Typer app on a real local lake: a bad option is one
`error:` line and exit 2 (before the lake is touched); --dry-run prints the plan and changes
nothing; a run compacts and prunes what the table says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tally.cli import app
from tally.lake import Lake, Manifest, PartitionWriter
from tally.lake.checksum import checksum

TODAY = datetime.now(UTC).date()
OLD = (TODAY - timedelta(days=3)).isoformat()
RAW = "raw/erp/customers"
SCHEMA = pa.schema([pa.field("customer_id", pa.int64())])


def _land(lake: Lake, path: str, ds: str, files: int) -> None:
    writer = PartitionWriter(lake, path, ds)
    for i in range(files):
        writer.write(SCHEMA, [pa.RecordBatch.from_pydict({"customer_id": [i * 2, i * 2 + 1]}, schema=SCHEMA)])
    writer.commit(Manifest(dataset="x", key="customer_id", files=list(writer.files), row_count=2 * files,
                           key_checksum=checksum(range(2 * files))))


@pytest.fixture()
def lake_dir(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("TALLY_PROFILE", str(tmp_path / "no-profile.json"))  # --lake only
    monkeypatch.setenv("COLUMNS", "300")
    lake = Lake(str(tmp_path / "lake"))
    _land(lake, RAW, OLD, files=10)
    _land(lake, "raw/kafka/activity", OLD, files=10)
    return str(tmp_path / "lake")


def invoke(*args: str):
    return CliRunner().invoke(app, ["lake", *args])


@pytest.mark.parametrize(("args", "expected"), [
    (["compact", "--ds", "2026-13-01"], "--ds must be a real date as YYYY-MM-DD"),
    (["compact", "--ds", OLD, "--older-than-days", "3"], "give --ds or --older-than-days, not both"),
    (["compact", "--older-than-days", "0"], "--older-than-days"),
    (["compact", "--older-than-days", "abc"], "--older-than-days"),
    (["compact", "--ds", TODAY.isoformat()], "is less than 2 days old"),
    (["compact", "--dataset", "erp.nope"], "--dataset"),
    (["compact", "--dataset", "erp.invoices"], "--dataset erp.invoices has no raw partitions in the lake; it holds: "
                                               "erp.customers, kafka.activity"),
    (["compact", "--lake", "ftp://x/y"], "--lake must be a local directory"),
    (["prune", "--bogus"], "No such option: --bogus"),
])
def test_usage_errors_are_one_line_and_exit_2(lake_dir, args, expected):
    result = invoke(*args, *(["--lake", lake_dir] if "--lake" not in args else []))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert len(Lake(lake_dir).read_manifest(RAW, OLD).files) == 10


def test_compact_dry_run_prints_the_plan_and_changes_nothing(lake_dir):
    result = invoke("compact", "--dry-run", "--lake", lake_dir)
    assert result.exit_code == 0, result.output
    assert "Compaction plan (dry run: nothing changed)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "erp.customers" in line)
    assert OLD in row and "compact" in row and "10 files (10 small) into 1" in row
    kafka = next(line for line in result.stdout.splitlines() if "kafka.activity" in line)
    assert "skip" in kafka and "Kafka partitions are not compacted" in kafka
    assert "1 partition(s): 10 files would go to 1." in result.stdout
    assert len(Lake(lake_dir).read_manifest(RAW, OLD).files) == 10


def test_compact_then_prune(lake_dir):
    result = invoke("compact", "--dataset", "erp.customers", "--format", "json", "--lake", lake_dir)
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert (record["dataset"], record["action"], record["files_before"], record["files_after"]) == (
        "erp.customers", "compacted", 10, 1)
    assert Lake(lake_dir).read_manifest(RAW, OLD)["compacted"]["files_before"] == 10

    lake = Lake(lake_dir)
    old_curated = (TODAY - timedelta(days=60)).isoformat()
    _land(lake, "curated/opportunities", old_curated, files=1)
    for days in range(35):
        _land(lake, "curated/opportunities", (TODAY - timedelta(days=days)).isoformat(), files=1)
    result = invoke("prune", "--dry-run", "--lake", lake_dir)
    assert result.exit_code == 0, result.output
    assert "Retention plan (dry run: nothing removed)" in result.stdout
    assert "curated/opportunities" in result.stdout and old_curated in result.stdout
    assert "1 partition(s) would be removed" in result.stdout
    assert old_curated in lake.committed("curated/opportunities")
    result = invoke("prune", "--lake", lake_dir)
    assert result.exit_code == 0, result.output
    assert old_curated not in lake.committed("curated/opportunities")
    assert len(lake.committed("curated/opportunities")) == 35
    assert lake.committed(RAW) == [OLD]
