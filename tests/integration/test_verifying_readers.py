"""The probe's fault, caught at the first reader: a committed raw Parquet file rewritten without 5
rows (same name, manifest untouched). The loader fails naming the raw partition and loads
nothing; a Spark job fails naming the raw partition before it writes anything; the raw gate
fails that dataset; the curated gate's own expectation is not derived from the damaged files."""

from __future__ import annotations

import curated_world as w
import psycopg
import pyarrow as pa
import pytest
from support.lake_faults import change_key, drop_rows

from tally import catalog
from tally.core.errors import DataProblem
from tally.core.resources import Resources
from tally.gates.curated import expected_curated_keys
from tally.gates.raw import _raw_results
from tally.lake import Manifest, PartitionWriter
from tally.lake.checksum import checksum
from tally.load.warehouse import load_partition

pytestmark = pytest.mark.integration

DS = "2026-12-01"
ORDERS = "raw/erp/sales_orders"
SCHEMA = pa.schema([pa.field("order_id", pa.int64()), pa.field("status", pa.string())])


def _commit_orders(lake, ds: str, sizes=(100, 3)) -> Manifest:
    writer, keys, first = PartitionWriter(lake, ORDERS, ds), [], 1
    for size in sizes:  # one file per size
        ids = list(range(first, first + size))
        writer.write(SCHEMA, [pa.RecordBatch.from_pydict({"order_id": ids, "status": ["open"] * size}, schema=SCHEMA)])
        keys, first = keys + ids, first + size
    return writer.commit(Manifest(dataset="erp.sales_orders", key="order_id", files=list(writer.files),
                                  row_count=len(keys), key_checksum=checksum(keys)))


def _slice(conn_info, ds: str) -> int:
    with psycopg.connect(conn_info.conninfo()) as conn:
        return conn.execute("SELECT count(*) FROM raw.erp_sales_orders WHERE _ds = %s", (ds,)).fetchone()[0]


def test_the_loader_fails_naming_the_raw_partition_and_loads_nothing(lake, warehouse_conn):
    def load(ds: str):
        return load_partition(warehouse_conn, lake, ORDERS, ds, "raw", "erp_sales_orders", "order_id")

    manifest = _commit_orders(lake, DS)
    assert load(DS).row_count == 103
    # a re-load of a damaged ds: fails before the first row, naming the raw partition; the
    # previous load stays as it was
    name, _ = drop_rows(lake, ORDERS, DS, 5)
    assert name == manifest.files[0]
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.sales_orders ds={DS}: {name} holds 95 rows, the commit "
                                          r"record says 100"):
        load(DS)
    assert _slice(warehouse_conn, DS) == 103

    # a first load of a damaged ds: nothing of it is loaded
    _commit_orders(lake, "2026-11-30")
    name, _ = drop_rows(lake, ORDERS, "2026-11-30", 5)
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.sales_orders ds=2026-11-30: {name} holds 95 rows"):
        load("2026-11-30")
    assert _slice(warehouse_conn, "2026-11-30") == 0

    # same row count, another key: only the checksum tells, after COPY took every row; the
    # load's transaction is aborted
    _commit_orders(lake, DS)
    change_key(lake, ORDERS, DS, "order_id", 999_999)
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.sales_orders ds={DS}: key checksum of order_id "
                                          r"[0-9a-f]{16}, the commit record says"):
        load(DS)
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM raw.erp_sales_orders WHERE order_id = 999999").fetchone()[0] == 0
    assert _slice(warehouse_conn, DS) == 103


# -- Spark and the gates, on the curated jobs' tiny lake ---------------------------------------------
@pytest.fixture
def damaged(tmp_path):
    """The curated jobs' lake, erp.customers ds=DS1 re-committed by the writer (so its manifest
    records each file's rows), then its file rewritten without 5 of its 10 rows."""
    root = tmp_path / "lake"
    lake = w.build_lake(root)
    path = catalog.ERP["customers"].lake_path
    manifest = lake.read_manifest(path, w.DS1)
    PartitionWriter(lake, path, w.DS1).commit(manifest.updated(source_count=manifest.row_count))
    return root, lake, path


def test_a_spark_job_fails_naming_the_raw_partition_before_it_writes(spark, damaged, capsys):
    root, lake, path = damaged
    job = w.load_job("conformed_customers")
    name, _ = drop_rows(lake, path, w.DS1, 5)
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.customers ds={w.DS1}: {name} holds 5 rows, the commit "
                                          r"record says 10"):
        job.run(spark, str(root), w.RUN_DS)
    assert lake.read_manifest("curated/conformed_customers", w.RUN_DS) is None  # nothing committed
    assert job.lib.job_main(job.JOB, job.run, "", ["--lake", str(root), "--ds", w.RUN_DS]) == 2
    assert f"raw.erp.customers ds={w.DS1}: {name} holds 5 rows" in capsys.readouterr().err


def test_a_spark_job_fails_on_the_key_checksum_when_the_counts_agree(spark, damaged):
    root, lake, path = damaged
    change_key(lake, path, w.DS1, "customer_id", 99_999)
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.customers ds={w.DS1}: key checksum of customer_id "
                                          r"[0-9a-f]{16}, the commit record says"):
        w.load_job("conformed_customers").run(spark, str(root), w.RUN_DS)


def test_the_raw_gate_fails_the_damaged_dataset_and_the_curated_expectation_is_not_derived_from_it(damaged):
    _, lake, path = damaged
    res = Resources(lake=lake, warehouse=None)
    name, _ = drop_rows(lake, path, w.DS1, 5)
    result = _raw_results(res, "erp.customers", w.DS1)[0]
    assert (result.success, result.hop, result.dataset) == (False, "raw", "erp.customers")
    (failure,) = result.failures
    assert failure["expectation"] == "partition_matches_commit_record"
    assert failure["observed"] == f"{name} holds 5 rows, the commit record says 10"
    assert failure["sample"] == [name]
    with pytest.raises(DataProblem, match=rf"^raw\.erp\.customers ds={w.DS1}: {name} holds 5 rows"):
        expected_curated_keys(lake, w.RUN_DS)
