"""The lake: one URI (a local directory or ``s3://bucket/prefix``) for every stage.

Layout: ``<zone>/<source>/<object>/ds=<ds>/part-<attempt>-NNNNN.parquet`` plus
``_manifest.json``, written last. The manifest is the commit marker: a ds without one does
not exist for readers, and readers use exactly the files the manifest lists.

Re-writing a ds (``write_batches`` with a fresh attempt token, then ``commit``) never
removes the previous version first: new files get new names, the new manifest replaces the
old one in a single write (atomic on a local disk and on S3), and only then are the files
no manifest lists removed. A crash at any point leaves either the old or the new version
committed, never a mix and never nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tally.catalog import Dataset

MANIFEST = "_manifest.json"

ARROW_TYPES: dict[str, pa.DataType] = {
    "id": pa.string(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "int": pa.int64(),
    "decimal": pa.decimal128(38, 9),
    "double": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(dataset: Dataset) -> pa.Schema:
    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], f.nullable) for f in dataset.fields])


def schema_fingerprint(schema: pa.Schema) -> str:
    import hashlib

    text = ";".join(f"{f.name}:{f.type}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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

    # -- writing -----------------------------------------------------------------
    def clear_partition(self, dataset_path: str, ds: str) -> None:
        """Uncommit (manifest first) and remove everything under the ds."""
        part = self.path(self.partition(dataset_path, ds))
        manifest = f"{part}/{MANIFEST}"
        if self._exists(manifest):
            self.fs.delete_file(manifest)
        if self._exists(part):
            self.fs.delete_dir(part)

    def write_batches(
        self,
        dataset_path: str,
        ds: str,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        rows_per_file: int = 1_000_000,
        attempt: str | None = None,
        writer_options: dict | None = None,
    ) -> Iterator[tuple[str, pa.RecordBatch]]:
        """Write record batches into part files, yielding (file, batch) as each lands.

        Memory stays bounded by one batch; files roll over every ``rows_per_file`` rows.
        Files are named after ``attempt`` (random if not given) so they never overwrite a
        committed version; ``commit`` afterwards makes them the ds. ``writer_options`` go to
        ``pyarrow.parquet.ParquetWriter`` (e.g. ``use_dictionary`` for only some columns).
        """
        part = self.path(self.partition(dataset_path, ds))
        self.fs.create_dir(part, recursive=True)
        attempt = attempt or new_attempt()
        writer: pq.ParquetWriter | None = None
        file_no, rows_in_file = 0, 0
        name = ""
        try:
            for batch in batches:
                if writer is None or rows_in_file >= rows_per_file:
                    if writer is not None:
                        writer.close()
                    name = f"part-{attempt}-{file_no:05d}.parquet"
                    writer = pq.ParquetWriter(f"{part}/{name}", schema, filesystem=self.fs, **(writer_options or {}))
                    file_no, rows_in_file = file_no + 1, 0
                writer.write_batch(batch)
                rows_in_file += batch.num_rows
                yield name, batch
            if writer is None:  # an empty interval still lands an empty, typed file
                name = f"part-{attempt}-00000.parquet"
                pq.write_table(schema.empty_table(), f"{part}/{name}", filesystem=self.fs)
                yield name, pa.RecordBatch.from_pylist([], schema=schema)
        finally:
            if writer is not None:
                writer.close()

    def write_manifest(self, dataset_path: str, ds: str, manifest: dict) -> dict:
        manifest = {**manifest, "ds": ds, "committed_at": datetime.now(UTC).isoformat()}
        target = self.path(self.partition(dataset_path, ds), MANIFEST)
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        if self.is_local:  # write aside, then rename: readers never see a half-written manifest
            tmp = f"{target}.tmp-{new_attempt()}"
            with self.fs.open_output_stream(tmp) as out:
                out.write(body)
            self.fs.move(tmp, target)
        else:  # one PUT replaces the object atomically on S3
            with self.fs.open_output_stream(target) as out:
                out.write(body)
        return manifest

    def commit(self, dataset_path: str, ds: str, manifest: dict) -> dict:
        """Make the files ``manifest["files"]`` lists the ds (one write), then drop the rest."""
        written = self.write_manifest(dataset_path, ds, manifest)
        keep = {*manifest["files"], MANIFEST}
        part = self.path(self.partition(dataset_path, ds))
        for info in self.fs.get_file_info(pafs.FileSelector(part, recursive=False)):
            if info.base_name not in keep:
                if info.type == pafs.FileType.Directory:
                    self.fs.delete_dir(info.path)
                else:
                    self.fs.delete_file(info.path)
        return written

    # -- reading -----------------------------------------------------------------
    def read_manifest(self, dataset_path: str, ds: str) -> dict | None:
        target = self.path(self.partition(dataset_path, ds), MANIFEST)
        if not self._exists(target):
            return None
        with self.fs.open_input_stream(target) as src:
            return json.loads(src.read())

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
        return [self.path(self.partition(dataset_path, ds), f) for f in manifest["files"]]

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
    import secrets

    return secrets.token_hex(4)


def local_root(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri) if parsed.scheme in ("", "file") else None
