"""tally_maintenance: compaction then pruning, daily; the compaction task compacts what the policy
marks and fails without retry, naming the partition, when one does not match its commit record."""

from __future__ import annotations

import importlib.util
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from support.lake_faults import drop_rows

from tally import catalog
from tally.airflow import tasks
from tally.lake import Manifest, PartitionWriter
from tally.lake.checksum import checksum
from tally.lake.compact import CompactionPolicy

DAGS = Path(__file__).resolve().parents[3] / "dags"
RAW = catalog.ERP["customers"].lake_path


def _land(lake, ds: str, files: int, rows: int = 10) -> None:
    """``files`` files of ``rows`` customers each, committed (as a stream of micro-batches lands)."""
    import pyarrow as pa

    schema = pa.schema([pa.field("customer_id", pa.int64())])
    writer = PartitionWriter(lake, RAW, ds)
    keys = list(range(files * rows))
    for i in range(files):
        writer.write(schema, [pa.RecordBatch.from_pydict({"customer_id": keys[i * rows:(i + 1) * rows]}, schema=schema)])
    writer.commit(Manifest(dataset="erp.customers", key="customer_id", files=list(writer.files), row_count=len(keys),
                           key_checksum=checksum(keys)))


def test_the_dag_compacts_then_prunes_every_day():
    spec = importlib.util.spec_from_file_location("tally_maintenance_under_test", DAGS / "tally_maintenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.tally_maintenance()
    assert dag.get_task("compact_raw").downstream_task_ids == {"prune"}
    assert dag.timetable.expression == "0 6 * * *" and not dag.catchup


def test_compact_raw_compacts_and_a_partition_unlike_its_commit_fails_naming_it(lake, monkeypatch):
    old = (date.today() - timedelta(days=CompactionPolicy().older_than_days + 3)).isoformat()
    older = (date.today() - timedelta(days=CompactionPolicy().older_than_days + 4)).isoformat()
    _land(lake, old, files=12)
    monkeypatch.setattr(tasks, "resources", lambda run_id=None, need=(): SimpleNamespace(lake=lake))
    done = tasks.compact_raw("r1")
    assert [(d["ds"], d["action"], d["files_before"], d["files_after"]) for d in done] == [(old, "compacted", 12, 1)]
    assert len(lake.read_manifest(RAW, old).files) == 1
    _land(lake, older, files=12)
    drop_rows(lake, RAW, older, 1)  # the files changed after their commit
    with pytest.raises(AirflowFailException, match=f"{RAW} ds={older}: .*holds 9 rows, the commit record says 10"):
        tasks.compact_raw("r2")
    assert len(lake.read_manifest(RAW, older).files) == 12  # left alone
