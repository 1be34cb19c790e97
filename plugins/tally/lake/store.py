"""The lake: one URI (a local directory or ``s3://bucket/prefix``) for every stage.

Layout: ``<zone>/<source>/<object>/ds=<ds>/<file>.parquet`` plus ``_manifest.json``. The
manifest (``tally.lake.manifest``) is the commit marker: a ds without one does not exist for
readers, and readers use exactly the files the manifest lists.

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

    def files(self, dataset_path: str, ds: str) -> list[str]:
        manifest = self.read_manifest(dataset_path, ds)
        if manifest is None:
            raise FileNotFoundError(f"{dataset_path} ds={ds} is not committed (no {MANIFEST})")
        return [self.path(self.partition(dataset_path, ds), f) for f in manifest.files]

    def read_table(self, dataset_path: str, ds: str, columns: list[str] | None = None) -> pa.Table:
        files = self.files(dataset_path, ds)
        tables = [pq.read_table(f, filesystem=self.fs, columns=columns) for f in files]
        return pa.concat_tables(tables) if tables else pa.table({})

    def schema(self, dataset_path: str, ds: str) -> pa.Schema:
        files = self.files(dataset_path, ds)
        return pq.read_schema(files[0], filesystem=self.fs)

    def iter_batches(self, dataset_path: str, ds: str, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        for f in self.files(dataset_path, ds):
            yield from pq.ParquetFile(f, filesystem=self.fs).iter_batches(batch_size=batch_size)

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
