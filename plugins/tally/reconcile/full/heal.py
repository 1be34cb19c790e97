"""Heal: re-extract exactly the keys a full reconciliation found wrong, through the lake.

The lake is the platform's record: the warehouse, the curated zone (Spark) and the marts (dbt)
are all rebuilt from it, and the ledger and the gates compare each hop with the lake's
manifests. So a heal never patches the warehouse alone: it lands the re-extracted rows in the
raw zone, in the **frontier partition** (the newest ds the warehouse has loaded, ``L``), as one
more attempt of that partition, and reloads that ds with the normal loader:

1. **Read** the keys from the source in one snapshot: missing and stale keys by key
   (``WHERE key IN (…) AND updated_at < cutoff``: a row changed since is left to the next
   daily run), and the extra keys again, to confirm they are still gone. Rows are typed by
   the extractor's own converter; rows that do not type go to the quarantine zone.
2. **Write** a new attempt of ``raw/erp/<table>/ds=L``: the healed rows, and a tombstone
   (``_deleted``, ``updated_at`` = the end of L's interval, as the extractor writes them) per
   extra key. Partition files that already hold one of these keys are rewritten without it
   (the raw gate requires one row per key per ds); the others are kept as they are. The files
   take the schema of the partition's existing files, so the loader reads one schema.
3. **Commit** a new manifest (one atomic write; the old version stays committed until then):
   files, ``row_count`` and ``key_checksum`` of what is there now, and ``source_count``,
   ``tombstones``, ``quarantined`` adjusted so that the raw gate's reconciliation
   (``row_count = source_count + tombstones - quarantined``) still holds; the ``heals`` list
   records what this heal did and the numbers from before it. Quarantined rows are committed
   to ``quarantine/erp/<table>/ds=L`` first, as the extractor does.
4. **Reload** ``raw.erp_<table>`` for L the write–audit–publish way (``tally.load.wap``): the
   partition is COPYed into ``wap_raw.erp_<table>``, its count and key checksum measured there
   must equal the new manifest's, and only then is it swapped into ``raw.erp_<table>`` in one
   transaction (recorded in ``ops.publications``); then the ledger's source, raw and warehouse
   hops for L are recorded.

The healed version wins everywhere downstream: it is the newest ``updated_at`` of its key
(stale keys are healed only when the source's version is newer than the warehouse's; a
tombstone's ``updated_at`` is L's interval end, later than any version landed up to L), and
the curated zone and dbt pick the latest version per key across partitions. Tomorrow's
extract sees the healed keys as landed (delete detection reads every committed partition).

Re-running the daily extract for L later replaces the partition (and drops the heal): the
next full reconciliation finds those keys again and heals them again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tally import ledger
from tally.catalog import ERP_DELETED, Dataset
from tally.core.errors import DataProblem
from tally.lake import Lake, Manifest, PartitionWriter, new_attempt, schema_fingerprint
from tally.lake.checksum import KeyChecksum, hash_sum
from tally.sources.erp.convert import Converter
from tally.sources.erp.deletes import tombstones
from tally.sources.erp.dialect import ErpConn, open_session
from tally.sources.erp.extract import quarantine_path, raw_schema, writer_options

CHUNK = 5_000  # keys per IN (…) list


class HealConflict(RuntimeError):
    """The partition changed while the heal was being written (a daily run re-landed it)."""


@dataclass
class HealResult:
    ds: str
    attempt: str
    rows: int = 0  # rows re-extracted and landed
    tombstones: int = 0
    quarantined: int = 0
    replaced: int = 0  # rows of the partition rewritten away (same key)
    skipped_in_flight: int = 0  # keys changed at the source since the comparison (next daily run)
    skipped_present: int = 0  # "extra" keys the source has again
    vanished: int = 0  # missing/stale keys the source no longer has
    reasons: dict = field(default_factory=dict)
    row_count: int = 0
    key_checksum: str = ""
    loaded_rows: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _in_lists(keys: list[int]) -> Iterator[list[int]]:
    for lo in range(0, len(keys), CHUNK):
        yield keys[lo:lo + CHUNK]


def _conform(batch: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """``batch`` in ``schema``'s columns and types (missing columns null, extra ones dropped)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def heal(erp: ErpConn, lake: Lake, warehouse, dataset: Dataset, ds: str, cutoff: datetime,
         fetch: list[int], tombstone: list[int], *, timezone: str = "UTC", batch_size: int = 50_000,
         now: datetime | None = None) -> HealResult:
    """Land ``fetch`` (re-read) and ``tombstone`` (deleted at the source) keys in partition ``ds``
    and reload that ds into the warehouse; returns what was done."""
    from tally.load import wap
    from tally.load.warehouse import load_partition
    from tally.stages.extract import expected_raw_rows

    path = dataset.lake_path
    manifest = lake.read_manifest(path, ds)
    if manifest is None:
        raise HealConflict(f"{dataset.dataset_id}: ds={ds} is not committed in the lake; nothing to heal into")
    attempt = f"heal{new_attempt()}"
    result = HealResult(ds, attempt)
    names = dataset.field_names
    converter = Converter(dataset.fields, timezone)
    good: list[pa.RecordBatch] = []
    bad: list[pa.RecordBatch] = []
    reasons: Counter[str] = Counter()
    wanted = set(fetch)
    seen: set[int] = set()

    with open_session(erp, timezone) as s:
        cols = ", ".join(s.quote(n) for n in names)
        key = s.quote(dataset.key)
        for chunk in _in_lists(sorted(fetch)):
            in_list = ", ".join(s.literal(int(k)) for k in chunk)
            # every row of those keys, so one changed since the comparison is seen (and left alone)
            for text in s.stream_text(f"SELECT {cols} FROM {s.quote(dataset.name)} WHERE {key} IN ({in_list})",  # noqa: S608
                                      names, batch_size):
                converted = converter.convert(text)
                if converted.bad is not None and converted.bad.num_rows:
                    keys_bad = converted.bad.column(dataset.key).to_pylist()
                    seen.update(int(k) for k in keys_bad if k is not None and str(k).strip().lstrip("-").isdigit())
                    bad.append(converted.bad)
                    reasons.update(converted.bad.column("reason").to_pylist())
                g = converted.good
                if g.num_rows:
                    seen.update(g.column(dataset.key).to_pylist())
                    fresh = pc.less(g.column(dataset.cursor), pa.scalar(cutoff, g.schema.field(dataset.cursor).type))
                    result.skipped_in_flight += g.num_rows - (pc.sum(fresh).as_py() or 0)
                    g = g.filter(fresh)
                    if g.num_rows:
                        good.append(g)
        present: set[int] = set()
        for chunk in _in_lists(sorted(tombstone)):
            in_list = ", ".join(s.literal(int(k)) for k in chunk)
            for text in s.stream_text(f"SELECT {key} FROM {s.quote(dataset.name)} WHERE {key} IN ({in_list})",  # noqa: S608
                                      [dataset.key], batch_size):
                present.update(int(k) for k in text.column(0).to_pylist() if k is not None)
    result.vanished = len(wanted - seen)
    result.skipped_present = len(present)
    tomb_keys = np.array(sorted(set(tombstone) - present), dtype=np.int64)

    schema = lake.schema(path, ds)  # the partition's own schema
    healed_rows = pa.concat_tables([_conform(b, schema.remove(schema.get_field_index(ERP_DELETED)))
                                    for b in good]) if good else None
    landed_keys: list[int] = (healed_rows.column(dataset.key).to_pylist() if healed_rows is not None else [])
    new_keys = set(landed_keys) | set(tomb_keys.tolist())
    result.rows, result.tombstones = len(landed_keys), len(tomb_keys)
    result.quarantined = sum(b.num_rows for b in bad)
    result.reasons = dict(reasons)
    if not new_keys and not bad:
        return result

    # -- the new attempt: rewrite files holding a healed key, add the healed rows -----------------
    key_set = pa.array(sorted(new_keys), pa.int64())
    lake.verify(path, ds)  # a heal builds on the committed files: they must be what was committed
    writer = PartitionWriter(lake, path, ds, attempt)
    files: list[str] = []
    removed_live = removed_tomb = 0
    removed_sum = 0
    for name in manifest.files:
        full = lake.path(lake.partition(path, ds), name)
        keys_only = pq.read_table(full, columns=[dataset.key, ERP_DELETED], filesystem=lake.fs)
        hit = pc.is_in(keys_only.column(dataset.key), value_set=key_set)
        if not pc.any(hit).as_py():
            files.append(name)
            continue
        table = pq.read_table(full, filesystem=lake.fs)
        gone = keys_only.filter(hit)
        dead = pc.fill_null(gone.column(ERP_DELETED), False)
        removed_tomb += pc.sum(dead).as_py() or 0
        removed_live += gone.num_rows - (pc.sum(dead).as_py() or 0)
        removed_sum += hash_sum(gone.column(dataset.key).to_pylist())
        kept = table.filter(pc.invert(hit))
        written = writer.write(table.schema, kept.to_batches() or [], writer_options=writer_options(table.schema))
        files += [f for f in written if f not in files]
    result.replaced = removed_live + removed_tomb

    def heal_batches() -> Iterator[pa.RecordBatch]:
        if healed_rows is not None and healed_rows.num_rows:
            live = healed_rows.append_column(pa.field(ERP_DELETED, pa.bool_(), False),
                                             pa.array(np.zeros(healed_rows.num_rows, dtype=bool)))
            yield from _conform(live, schema).to_batches()
        if len(tomb_keys):
            raw = raw_schema(dataset)
            for b in tombstones(dataset, raw, tomb_keys, cutoff, batch_size):
                yield from _conform(b, schema).to_batches()

    if new_keys:
        written = writer.write(schema, heal_batches(), writer_options=writer_options(schema))
        files += [f for f in written if f not in files]

    # -- quarantine first, then the raw manifest --------------------------------------------------
    q_path = quarantine_path(dataset)
    q_files: list[str] = []
    if bad:
        q_manifest = lake.read_manifest(q_path, ds) or Manifest()
        q_writer = PartitionWriter(lake, q_path, ds, attempt)
        written = q_writer.write(converter.quarantine_schema, bad)
        q_files = [*q_manifest.files, *(f for f in written if f not in q_manifest.files)]
        q_writer.commit(q_manifest.updated(
            dataset=dataset.dataset_id, files=q_files, row_count=int(q_manifest.row_count or 0) + result.quarantined,
            reasons=dict(Counter(q_manifest.get("reasons", {})) + reasons),
            schema_fingerprint=schema_fingerprint(converter.quarantine_schema),
        ))
    current = lake.read_manifest(path, ds)
    if current is None or current.get("committed_at") != manifest.get("committed_at"):
        raise HealConflict(f"{dataset.dataset_id} ds={ds} was re-committed while healing; run the reconciliation "
                           "again once the daily run is done")
    before = {k: manifest.get(k) for k in ("row_count", "key_checksum", "source_count", "tombstones", "quarantined")}
    added_sum = hash_sum(landed_keys) + hash_sum(tomb_keys.tolist())
    checksum = KeyChecksum.from_hex(manifest.key_checksum)
    checksum.add_sum(added_sum - removed_sum, 0)
    quarantine = dict(manifest.get("quarantine") or {})
    if bad:
        quarantine = {**quarantine, "path": lake.partition(q_path, ds), "files": q_files,
                      "reasons": dict(Counter(quarantine.get("reasons", {})) + reasons)}
    at = (now or datetime.now(UTC)).isoformat()
    committed = writer.commit(manifest.updated(
        files=files,
        row_count=manifest.row_count - result.replaced + result.rows + result.tombstones,
        key_checksum=checksum.hexdigest(),
        source_count=manifest.source_count - removed_live + result.rows + result.quarantined,
        tombstones=int(manifest.get("tombstones") or 0) - removed_tomb + result.tombstones,
        quarantined=int(manifest.get("quarantined") or 0) + result.quarantined,
        quarantine=quarantine,
        heals=[*manifest.get("heals", []), {
            "at": at, "attempt": attempt, "cutoff": cutoff.isoformat(), "rows": result.rows,
            "tombstones": result.tombstones, "quarantined": result.quarantined, "replaced_rows": removed_live,
            "replaced_tombstones": removed_tomb, "keys": sorted(new_keys)[:50], "before": before}],
    ))
    result.row_count, result.key_checksum = committed.row_count, committed.key_checksum

    # -- reload the ds and record the ledger ------------------------------------------------------
    # write, audit, publish (tally.load.wap): staged, checked against the manifest just committed,
    # and only then swapped into the published table, so a wrong reload is never published.
    import psycopg

    target = wap.target_of(dataset.dataset_id)
    loaded = load_partition(warehouse, lake, path, ds, wap.staging_schema("raw"), dataset.warehouse_table,
                            dataset.key)
    result.loaded_rows = loaded.row_count
    if loaded.row_count != committed.row_count or loaded.key_checksum != committed.key_checksum:
        raise DataProblem(f"{dataset.dataset_id} ds={ds}: the heal's reload staged {loaded.row_count} rows "
                          f"({loaded.key_checksum}) but the manifest says {committed.row_count} "
                          f"({committed.key_checksum}); {target.published} is unchanged")
    with psycopg.connect(warehouse.conninfo()) as conn, conn.transaction():
        wap.publish_table(conn, target, ds, loaded.row_count, run_id=f"heal:{at}")
    loaded = dataclasses.replace(loaded, table=target.published)

    heal_note = {"heal": {k: v for k, v in result.to_dict().items() if k not in ("row_count", "key_checksum")}}
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        old = {e.hop: e.details for e in ledger.entries(conn, ds) if e.dataset == dataset.dataset_id}
        for hop, rows, checksum_ in (("source", expected_raw_rows(committed), None),
                                     ("raw", committed.row_count, committed.key_checksum),
                                     ("warehouse", loaded.row_count, loaded.key_checksum)):
            details = {**old.get(hop, {}), **heal_note}
            if hop == "warehouse":
                details["table"] = loaded.table
            ledger.record(conn, ledger.Entry(ds, dataset.dataset_id, hop, rows, checksum_, details))
    return result

