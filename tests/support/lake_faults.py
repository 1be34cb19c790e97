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
