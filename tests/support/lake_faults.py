"""A write killed between its files and its manifest, for the per-zone fault tests: the writer's
commit step (``PartitionWriter.commit``) raises for one dataset path, after every file of the new
attempt is written and before its manifest is."""

from __future__ import annotations

import pyarrow.fs as pafs

from tally.lake import MANIFEST, Lake, PartitionWriter
from tally.lake.checksum import KeyChecksum


class Killed(RuntimeError):
    """The process died between the files and the manifest."""


def kill_before_manifest(monkeypatch, dataset_path: str) -> None:
    real = PartitionWriter.commit

    def commit(self, manifest, **options):
        if self.dataset_path == dataset_path:
            raise Killed(f"killed before the manifest of {dataset_path} ds={self.ds}")
        return real(self, manifest, **options)

    monkeypatch.setattr(PartitionWriter, "commit", commit)


def snapshot(lake: Lake, dataset_path: str, ds: str) -> dict:
    manifest = lake.read_manifest(dataset_path, ds)
    assert manifest is not None, f"{dataset_path} ds={ds} is not committed"
    return {"row_count": manifest.row_count, "key_checksum": manifest.key_checksum, "files": list(manifest.files),
            "committed_at": manifest.committed_at}


def assert_previous_version_whole(lake: Lake, dataset_path: str, ds: str, before: dict, key: str) -> None:
    """The committed version is ``before``, every file it lists is there and reads whole (what the
    gates read: ``Lake.read_table`` of the listed files), and the killed attempt did write files."""
    assert snapshot(lake, dataset_path, ds) == before
    folder = lake.path(Lake.partition(dataset_path, ds))
    present = {i.base_name for i in lake.fs.get_file_info(pafs.FileSelector(folder, recursive=True))}
    assert set(before["files"]) <= present
    assert present - {*before["files"], MANIFEST}, "the killed attempt wrote no file"
    table = lake.read_table(dataset_path, ds)
    acc = KeyChecksum()
    acc.update_arrow(table.column(key))
    assert (table.num_rows, acc.hexdigest()) == (before["row_count"], before["key_checksum"])


# -- a committed file changed after the commit (what every reader must catch) -------------------
def drop_rows(lake: Lake, dataset_path: str, ds: str, n: int = 5, index: int = 0) -> tuple[str, list]:
    """Rewrite the ``index``-th file the ds's manifest lists without its last ``n`` rows, under the
    same name (the manifest is left alone); returns the file name and the rows dropped."""
    import pyarrow.parquet as pq

    name = lake.read_manifest(dataset_path, ds).files[index]
    path = lake.path(Lake.partition(dataset_path, ds), name)
    table = pq.read_table(path, filesystem=lake.fs)
    assert table.num_rows > n, f"{name} holds {table.num_rows} rows: cannot drop {n}"
    pq.write_table(table.slice(0, table.num_rows - n), path, filesystem=lake.fs)
    return name, table.slice(table.num_rows - n).to_pylist()


def change_key(lake: Lake, dataset_path: str, ds: str, key: str, value, index: int = 0) -> str:
    """Rewrite the ``index``-th listed file with its first row's ``key`` set to ``value`` (same
    row count, other keys: only the key checksum can tell); returns the file name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = lake.read_manifest(dataset_path, ds).files[index]
    path = lake.path(Lake.partition(dataset_path, ds), name)
    table = pq.read_table(path, filesystem=lake.fs)
    at = table.schema.get_field_index(key)
    keys = table.column(at).to_pylist()
    keys[0] = value
    pq.write_table(table.set_column(at, table.schema.field(at), pa.array(keys, table.schema.field(at).type)), path,
                   filesystem=lake.fs)
    return name
