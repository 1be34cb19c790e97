"""Verifying readers (tally.lake.verify): the commit records each file's rows, and every read
through the Lake checks the files against the commit record, naming the partition and the
difference."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tally.core.errors import DataProblem
from tally.lake import Manifest, PartitionWriter
from tally.lake.checksum import checksum
from tally.lake.verify import KeyCheck, PartitionMismatch, checksum_matches, footer_problems

PATH, DS = "raw/erp/sales_orders", "2026-12-01"
SCHEMA = pa.schema([pa.field("order_id", pa.int64()), pa.field("status", pa.string())])


def rows(lo: int, hi: int) -> pa.Table:
    return pa.table({"order_id": list(range(lo, hi)), "status": ["open"] * (hi - lo)}, schema=SCHEMA)


def commit(lake, *tables: pa.Table, key: str | None = "order_id") -> Manifest:
    writer = PartitionWriter(lake, PATH, DS)
    for table in tables:
        writer.write(SCHEMA, table.to_batches(), rows_per_file=10**9)
    keys = [k for t in tables for k in t.column("order_id").to_pylist()]
    return writer.commit(Manifest(dataset="erp.sales_orders", files=list(writer.files), key=key,
                                  row_count=len(keys), key_checksum=checksum(keys)))


def rewrite(lake, name: str, table: pa.Table) -> None:
    """Replace one committed file by another with the same name (the probe's fault)."""
    pq.write_table(table, lake.path(lake.partition(PATH, DS), name), filesystem=lake.fs)


def test_the_commit_records_each_files_footer_rows(lake):
    manifest = commit(lake, rows(0, 100), rows(100, 103))
    assert manifest.file_rows == dict(zip(manifest.files, [100, 3], strict=True))
    assert lake.read_manifest(PATH, DS).file_rows == manifest.file_rows
    assert footer_problems(lake, PATH, DS, manifest) == ([], [])


def test_a_commit_whose_files_do_not_add_up_to_its_row_count_is_refused(lake):
    writer = PartitionWriter(lake, PATH, DS)
    files = writer.write(SCHEMA, rows(0, 10).to_batches())
    with pytest.raises(ValueError, match=r"raw.erp.sales_orders ds=2026-12-01: the files hold 10 rows but the "
                                         r"manifest says 11"):
        writer.commit(Manifest(files=files, row_count=11))
    assert lake.read_manifest(PATH, DS) is None


def test_a_file_rewritten_without_5_rows_fails_every_reader_naming_partition_file_and_counts(lake):
    manifest = commit(lake, rows(0, 100), rows(100, 103))
    victim = manifest.files[0]
    rewrite(lake, victim, rows(0, 95))
    message = (rf"raw.erp.sales_orders ds=2026-12-01: {victim} holds 95 rows, the commit record says 100")
    with pytest.raises(PartitionMismatch, match=message) as info:
        lake.read_table(PATH, DS)
    assert info.value.files == [victim] and isinstance(info.value, DataProblem)
    with pytest.raises(PartitionMismatch, match=message):
        next(lake.iter_batches(PATH, DS))  # before the first batch
    with pytest.raises(PartitionMismatch, match=message):
        lake.read_table(PATH, DS, columns=["status"])
    with pytest.raises(PartitionMismatch, match=message):
        lake.verify(PATH, DS)
    assert lake.read_table(PATH, DS, verify=False).num_rows == 98  # the unverified read, for repairs


def test_same_row_count_other_keys_fail_on_the_key_checksum_after_the_last_batch(lake):
    manifest = commit(lake, rows(0, 100), rows(100, 103))
    changed = rows(0, 100).set_column(0, "order_id", pa.array([*range(99), 777], pa.int64()))
    rewrite(lake, manifest.files[0], changed)
    want = checksum([*range(99), 777, 100, 101, 102])
    message = (rf"raw.erp.sales_orders ds=2026-12-01: key checksum of order_id {want}, the commit record says "
               rf"{manifest.key_checksum}")
    seen = []
    with pytest.raises(PartitionMismatch, match=message):
        for batch in lake.iter_batches(PATH, DS, batch_size=50):
            seen.append(batch.num_rows)
    assert sum(seen) == 103  # every batch was handed over, and the iteration still did not end normally
    with pytest.raises(PartitionMismatch, match=message):
        lake.read_table(PATH, DS, columns=["status"])  # the key is read for the check, not returned
    with pytest.raises(PartitionMismatch, match=message):
        lake.verify(PATH, DS)


def test_intact_partitions_read_whole_and_the_key_column_added_for_the_check_is_dropped(lake):
    commit(lake, rows(0, 100), rows(100, 103))
    assert lake.read_table(PATH, DS).num_rows == 103
    assert lake.read_table(PATH, DS, columns=["status"]).column_names == ["status"]
    assert sum(b.num_rows for b in lake.iter_batches(PATH, DS, batch_size=7)) == 103
    assert lake.verify(PATH, DS).row_count == 103


def test_a_listed_file_that_is_gone_is_named(lake):
    manifest = commit(lake, rows(0, 10), rows(10, 12))
    lake.fs.delete_file(lake.path(lake.partition(PATH, DS), manifest.files[1]))
    with pytest.raises(PartitionMismatch, match=rf"{manifest.files[1]} is gone"):
        lake.read_table(PATH, DS)


def test_manifests_written_before_file_rows_still_read_and_check_the_total_and_the_checksum(lake):
    writer = PartitionWriter(lake, PATH, DS)
    files = writer.write(SCHEMA, rows(0, 20).to_batches())
    old = {"dataset": "erp.sales_orders", "files": files, "row_count": 20, "key": "order_id",
           "key_checksum": checksum(range(20))}
    lake.write_manifest(PATH, DS, old)  # as committed before file_rows existed
    assert lake.read_manifest(PATH, DS).file_rows is None
    assert lake.read_table(PATH, DS).num_rows == 20
    rewrite(lake, files[0], rows(0, 15))
    with pytest.raises(PartitionMismatch, match="the files hold 15 rows, the commit record says 20"):
        lake.read_table(PATH, DS)
    rewrite(lake, files[0], rows(1, 21))  # the same count, other keys
    with pytest.raises(PartitionMismatch, match="key checksum of order_id"):
        lake.read_table(PATH, DS)


def test_a_manifest_without_a_key_skips_the_checksum_only(lake):
    manifest = commit(lake, rows(0, 10), key=None)
    rewrite(lake, manifest.files[0], rows(5, 15))
    assert lake.read_table(PATH, DS).num_rows == 10
    rewrite(lake, manifest.files[0], rows(5, 14))
    with pytest.raises(PartitionMismatch, match="holds 9 rows, the commit record says 10"):
        lake.read_table(PATH, DS)


def test_a_recommit_keeps_the_recorded_rows_of_files_it_carries_over(lake):
    """A Kafka ds or a heal commits a new version that keeps some committed files: their rows are
    carried from the commit record, not re-read (a file damaged meanwhile is not blessed)."""
    manifest = commit(lake, rows(0, 10))
    kept = manifest.files[0]
    rewrite(lake, kept, rows(0, 4))
    writer = PartitionWriter(lake, PATH, DS)
    added = writer.write(SCHEMA, rows(10, 13).to_batches())
    again = writer.commit(Manifest(files=[kept, *added]))
    assert again.file_rows == {kept: 10, added[0]: 3}
    with pytest.raises(PartitionMismatch, match=rf"{kept} holds 4 rows, the commit record says 10"):
        lake.read_table(PATH, DS)


def test_null_keys_match_either_convention():
    """The Arrow writers hash a NULL key as the text 'None'; Spark and SQL skip it."""
    keys = ["a", "b"]
    total = int(checksum(keys), 16)
    assert checksum_matches(checksum(keys), total, nulls=1)
    assert checksum_matches(checksum([*keys, None]), total, nulls=1)
    assert not checksum_matches(checksum(['a']), total, nulls=1)
    m = Manifest(files=["f"], key="k", row_count=3, key_checksum=checksum(["a", None, "b"]))
    check = KeyCheck(PATH, DS, m)
    check.update(pa.table({"k": ["a", None, "b"]}))
    check.finish()


def test_the_erp_delete_check_reads_landed_keys_verified(lake):
    """The ERP's delete detection reads the key of every committed ds (what Tally believes
    exists): a key changed in a committed file after its commit fails there, naming the
    partition, instead of silently shifting which keys count as landed."""
    from tally import catalog
    from tally.sources.erp.deletes import landed_keys

    manifest = commit(lake, rows(0, 10))
    dataset = catalog.get("erp.sales_orders")
    assert landed_keys(lake, dataset, [DS]).tolist() == list(range(10))
    rewrite(lake, manifest.files[0], rows(1, 11))  # same row count: only the checksum can tell
    with pytest.raises(PartitionMismatch, match=r"raw\.erp\.sales_orders ds=2026-12-01: key checksum of order_id"):
        landed_keys(lake, dataset, [DS])
