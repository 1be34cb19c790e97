"""The lake: one URI (a local directory or ``s3://bucket/prefix``) for every stage.

Layout: ``<zone>/<source>/<object>/ds=<ds>/<file>.parquet`` plus ``_manifest.json``. The
manifest (``tally.lake.manifest``) is the commit marker: a ds without one does not exist for
readers, and readers use exactly the files the manifest lists, checked against it
(``tally.lake.verify``: per-file rows, row count, key checksum) as they read.

``Lake`` is the storage: paths, the filesystem, reading committed partitions and writing one
manifest atomically. Writing a new version of a ds (new files, then the manifest, then the
old files swept) is ``tally.lake.writer.PartitionWriter``'s job, the one way every zone
commits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tally.lake.manifest import MANIFEST, Manifest
from tally.lake.verify import KeyCheck, check_footers


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"


class Lake:
    """A lake rooted at ``uri``; all paths given to methods are relative to it."""

    def __init__(self, uri: str, s3: S3Options | None = None) -> None:
        self.uri = uri.rstrip("/")
        parsed = urlparse(self.uri)
        if parsed.scheme in ("s3", "s3a"):
            s3 = s3 or S3Options()
            endpoint = urlparse(s3.endpoint_url) if s3.endpoint_url else None
            self.fs: pafs.FileSystem = pafs.S3FileSystem(
                access_key=s3.access_key,
                secret_key=s3.secret_key,
                region=s3.region,
                endpoint_override=endpoint.netloc if endpoint else None,
                scheme=endpoint.scheme if endpoint else "https",
                allow_bucket_creation=True,
            )
            self.root = f"{parsed.netloc}{parsed.path}".rstrip("/")
        elif parsed.scheme in ("", "file"):
            self.fs = pafs.LocalFileSystem()
            self.root = os.path.abspath(parsed.path if parsed.scheme else self.uri)
        else:
            raise ValueError(f"unsupported lake URI scheme {parsed.scheme!r} in {uri!r}: use a path or s3://")

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def url(self, *parts: str) -> str:
        """A URL for engines other than pyarrow (Spark): file:///… or s3a://…"""
        full = self.path(*parts)
        return f"file://{full}" if self.is_local else f"s3a://{full}"

    @staticmethod
    def partition(dataset_path: str, ds: str) -> str:
        return f"{dataset_path}/ds={ds}"

    # -- writing (see tally.lake.writer) -------------------------------------------------
    def write_manifest(self, dataset_path: str, ds: str, manifest: Mapping[str, Any]) -> Manifest:
        """Write ``manifest`` as the ds's ``_manifest.json`` in one atomic step, stamped with the
        ds and the commit time; returns what was written. Files are not checked or swept: use
        ``tally.lake.writer.PartitionWriter`` to commit a new version."""
        written = Manifest.from_dict(manifest).updated(ds=ds, committed_at=datetime.now(UTC).isoformat())
        target = self.path(self.partition(dataset_path, ds), MANIFEST)
        body = written.to_json()
        if self.is_local:  # write aside, then rename: readers never see a half-written manifest
            tmp = f"{target}.tmp-{new_attempt()}"
            with self.fs.open_output_stream(tmp) as out:
                out.write(body)
            self.fs.move(tmp, target)
        else:  # one PUT replaces the object atomically on S3
            with self.fs.open_output_stream(target) as out:
                out.write(body)
        return written

    # -- reading -----------------------------------------------------------------
    def read_manifest(self, dataset_path: str, ds: str) -> Manifest | None:
        target = self.path(self.partition(dataset_path, ds), MANIFEST)
        if not self._exists(target):
            return None
        with self.fs.open_input_stream(target) as src:
            return Manifest.from_json(src.read())

    def committed(self, dataset_path: str, up_to: str | None = None) -> list[str]:
        """The committed ds values of a dataset (sorted), optionally those ``<= up_to``."""
        base = self.path(dataset_path)
        if not self._exists(base):
            return []
        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(base, recursive=False)):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("ds="):
                ds = name[3:]
                if (up_to is None or ds <= up_to) and self._exists(f"{info.path}/{MANIFEST}"):
                    out.append(ds)
        return sorted(out)

    def committed_manifest(self, dataset_path: str, ds: str) -> Manifest:
        """The ds's manifest; ``FileNotFoundError`` when the ds is not committed."""
        manifest = self.read_manifest(dataset_path, ds)
        if manifest is None:
            raise FileNotFoundError(f"{dataset_path} ds={ds} is not committed (no {MANIFEST})")
        return manifest

    def files(self, dataset_path: str, ds: str) -> list[str]:
        manifest = self.committed_manifest(dataset_path, ds)
        return [self.path(self.partition(dataset_path, ds), f) for f in manifest.files]

    def read_table(self, dataset_path: str, ds: str, columns: list[str] | None = None, *,
                   verify: bool = True) -> pa.Table:
        """The committed ds (only ``columns``, if given). Verified against its commit record
        (``tally.lake.verify``: footers, row count, key checksum) unless ``verify=False``;
        ``PartitionMismatch`` names the partition and the difference."""
        manifest = self.committed_manifest(dataset_path, ds)
        folder = self.path(self.partition(dataset_path, ds))
        check = KeyCheck(dataset_path, ds, manifest) if verify else None
        read = columns
        if check is not None:
            check_footers(self, dataset_path, ds, manifest)
            if check.active and columns is not None and check.key not in columns:
                read = [*columns, check.key]  # the key is read for the checksum, then dropped
        tables = [pq.read_table(f"{folder}/{f}", filesystem=self.fs, columns=read) for f in manifest.files]
        table = pa.concat_tables(tables) if tables else pa.table({})
        if check is not None:
            if tables:
                check.update(table)
            check.finish()
            if read is not columns:
                table = table.drop_columns([check.key])
        return table

    def verify(self, dataset_path: str, ds: str) -> Manifest:
        """Check a committed ds against its commit record without keeping its data (the footers,
        then the key column alone, streamed); returns the manifest. ``PartitionMismatch`` names
        the partition and the difference; ``FileNotFoundError`` when the ds is not committed."""
        manifest = self.committed_manifest(dataset_path, ds)
        check_footers(self, dataset_path, ds, manifest)
        check = KeyCheck(dataset_path, ds, manifest)
        if check.active:
            folder = self.path(self.partition(dataset_path, ds))
            for f in manifest.files:
                pf = pq.ParquetFile(f"{folder}/{f}", filesystem=self.fs)
                if check.key not in pf.schema_arrow.names:
                    check.update(pf.schema_arrow.empty_table())  # raises: no key column
                for batch in pf.iter_batches(batch_size=262_144, columns=[check.key]):
                    check.update(batch)
            check.finish()
        return manifest

    def schema(self, dataset_path: str, ds: str, *, verify: bool = True) -> pa.Schema:
        """The schema of the ds's first file; the footers are checked first unless ``verify=False``."""
        manifest = self.committed_manifest(dataset_path, ds)
        if verify:
            check_footers(self, dataset_path, ds, manifest)
        return pq.read_schema(self.path(self.partition(dataset_path, ds), manifest.files[0]), filesystem=self.fs)

    def iter_batches(self, dataset_path: str, ds: str, batch_size: int = 65_536, *,
                     verify: bool = True) -> Iterator[pa.RecordBatch]:
        """The committed ds, batch by batch (bounded memory). Verified unless ``verify=False``:
        the footers before the first batch, the row count and key checksum of every batch
        yielded after the last one, raising ``PartitionMismatch`` before the iteration ends (so
        a consumer that writes batches inside a transaction aborts it)."""
        manifest = self.committed_manifest(dataset_path, ds)
        folder = self.path(self.partition(dataset_path, ds))
        check = None
        if verify:
            check_footers(self, dataset_path, ds, manifest)
            check = KeyCheck(dataset_path, ds, manifest)
        for f in manifest.files:
            for batch in pq.ParquetFile(f"{folder}/{f}", filesystem=self.fs).iter_batches(batch_size=batch_size):
                if check is not None:
                    check.update(batch)
                yield batch
        if check is not None:
            check.finish()

    def exists(self, path: str) -> bool:
        return self._exists(path)

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound


def new_attempt() -> str:
    """A fresh token naming one write attempt's files (never the name of a committed file)."""
    return secrets.token_hex(4)


def local_root(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri) if parsed.scheme in ("", "file") else None
