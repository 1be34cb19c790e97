"""A partition's manifest, ``_manifest.json``: the commit marker of a ds.

Every zone writes the same common fields (``dataset``, ``files``, ``file_rows``, ``row_count``,
``key_checksum``, ``schema_fingerprint``, ``ds``, ``committed_at``, and where they apply
``key``, ``source_count``, ``watermark``, ``mode``); what only one zone records (the ERP's
tombstones, Kafka's per-file entries, a curated job's counts and inputs…) is in ``extra``.

A ``Manifest`` serialises to exactly the JSON written before it existed: the common fields
that are set, next to the ``extra`` values, at the top level of one object. It also reads as
that JSON object (``manifest["row_count"]``, ``.get``, ``in``, ``.items()``), so readers that
only need a value or two need not know which fields are typed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MANIFEST = "_manifest.json"


@dataclass(eq=False)
class Manifest(Mapping[str, Any]):
    files: list[str] = field(default_factory=list)  # file names in the ds folder: the ds's data
    # rows in each listed file's Parquet footer, recorded by the commit (tally.lake.writer); None in
    # manifests committed before it existed (readers then check the total and the checksum only)
    file_rows: dict[str, int] | None = None
    dataset: str | None = None
    row_count: int | None = None
    key_checksum: str | None = None  # tally.lake.checksum of the key column over every listed row
    schema_fingerprint: str | None = None
    key: str | None = None
    source_count: int | None = None
    watermark: dict[str, Any] | None = None
    mode: str | None = None
    ds: str | None = None  # set by the commit
    committed_at: str | None = None  # set by the commit
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = set(self.extra) & _COMMON
        if clash:
            raise ValueError(f"manifest extra values may not name common fields: {sorted(clash)}")

    # -- the JSON form -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """A manifest from its JSON object (also one written before this class existed)."""
        if isinstance(data, Manifest):
            return dataclasses.replace(data, files=list(data.files), extra=dict(data.extra),
                                       file_rows=dict(data.file_rows) if data.file_rows is not None else None)
        common = {k: data[k] for k in _COMMON if k in data}
        common["files"] = list(common.get("files") or [])
        return cls(**common, extra={k: v for k, v in data.items() if k not in _COMMON})

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _ORDER if getattr(self, k) is not None}
        out["files"] = list(self.files)
        out.update(self.extra)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str).encode()

    def updated(self, **values: Any) -> Manifest:
        """A copy with ``values`` set: common fields by attribute, anything else in ``extra``."""
        common = {k: v for k, v in values.items() if k in _COMMON}
        extra = {**self.extra, **{k: v for k, v in values.items() if k not in _COMMON}}
        return dataclasses.replace(self, **common, extra=extra)

    # -- read access by key (Mapping over to_dict()) --------------------------------------
    def __getitem__(self, name: str) -> Any:
        if name in _COMMON:
            value = getattr(self, name)
            if value is None and name != "files":
                raise KeyError(name)
            return value
        return self.extra[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"Manifest({self.to_dict()!r})"


_COMMON = frozenset(f.name for f in dataclasses.fields(Manifest)) - {"extra"}
_ORDER = tuple(f.name for f in dataclasses.fields(Manifest) if f.name != "extra")


def commit_id(manifest: Mapping[str, Any]) -> str:
    """The identity of one commit of a ds: a short hash of its ``committed_at``, its files (sorted)
    and its key checksum. A re-commit (new files, a new time) has another identity even with the
    same rows, so a reader that recorded the ids it consumed (the state zone:
    ``tally.lake.state``) can tell that an input changed without reading it.

    Except after a compaction (``tally.lake.compact``), which rewrites the same rows into fewer
    files: it records the id of the commit it replaced as ``content_id`` and, in
    ``content_of``, the files, row count and key checksum it wrote; while those are still the
    manifest's, the identity is ``content_id``, so the states that consumed the partition stay
    valid. A later commit that carries the extra values over but changes the files (a heal, a
    re-landing) no longer matches ``content_of`` and gets a new identity, as any re-commit does."""
    content_id = manifest.get("content_id")
    if isinstance(content_id, str) and content_id and _content_unchanged(manifest):
        return content_id
    body = json.dumps([manifest.get("committed_at"), sorted(manifest.get("files") or []), manifest.get("key_checksum")])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def content_record(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What ``content_id`` vouches for: the files (sorted), the row count and the key checksum."""
    return {"files": sorted(manifest.get("files") or []), "row_count": manifest.get("row_count"),
            "key_checksum": manifest.get("key_checksum")}


def _content_unchanged(manifest: Mapping[str, Any]) -> bool:
    recorded = manifest.get("content_of")
    return isinstance(recorded, Mapping) and dict(recorded) == content_record(manifest)
