"""The extract stage: land one source dataset's interval in the raw zone; ledger: source and raw hops."""

from __future__ import annotations

from datetime import datetime

from tally import catalog, sources
from tally.core.resources import Resources, check_ds, record
from tally.ledger import Entry
from tally.sources import Progress


def extract(res: Resources, dataset_id: str, ds: str, start: datetime, end: datetime,
            progress: Progress | None = None, ledger: bool = True) -> dict:
    """Land one source dataset for the interval (its source found by ``tally.sources.for_dataset``);
    ledger: source and raw hops (not with ``ledger=False``: an ad-hoc extract to a scratch lake
    must not replace the evidence of what the DAG landed)."""
    check_ds(ds)
    dataset = catalog.get(dataset_id)
    manifest = sources.for_dataset(res, dataset).extract(res.lake, dataset, ds, start, end, progress=progress)
    return _recorded(res, dataset_id, ds, manifest, ledger)


def reuse_landed(res: Resources, dataset_id: str, ds: str) -> dict:
    """The dataset's committed raw partition for ds, verified against its commit record, as the
    extract's result (no call to the source): a backfill rebuilds a past day from what was landed
    on the day, because a source that holds only current state cannot give that day back
    (``tally.backfill.plan``). The ledger's source and raw hops are recorded again from the
    manifest, under this run."""
    check_ds(ds)
    dataset = catalog.get(dataset_id)
    manifest = res.lake.verify(dataset.lake_path, ds)
    return {**_recorded(res, dataset_id, ds, manifest, True), "reused": True}


def _recorded(res: Resources, dataset_id: str, ds: str, manifest, ledger: bool) -> dict:
    """Ledger entries for a landed manifest (unless ``ledger`` is false); the extract's result."""
    # Rows re-read from the overlap window are counted, but kept apart: they were already
    # counted in the previous ds, and the curated zone keeps one (latest) version of each.
    # The other values are the ones a source records (absent ones are None).
    details = {"watermark": manifest["watermark"], "mode": manifest["mode"],
               "overlap_rows": manifest.get("overlap_rows", 0), "api": manifest.get("api"),
               "schema_drift": manifest.get("schema_drift")}
    if "tombstones" in manifest or "quarantined" in manifest:  # deletes found by key, rows set aside
        details |= {"source_count": manifest["source_count"], "tombstones": manifest.get("tombstones", 0),
                    "quarantined": manifest.get("quarantined", 0),
                    "quarantine": (manifest.get("quarantine") or {}).get("reasons", {})}
    if ledger:
        record(
            res,
            Entry(ds, dataset_id, "source", expected_raw_rows(manifest), None, details),
            Entry(ds, dataset_id, "raw", manifest["row_count"], manifest["key_checksum"],
                  {**details, "files": manifest["files"]}),
        )
    keys = ("dataset", "row_count", "source_count", "key_checksum", "mode", "overlap_rows", "api", "schema_drift",
            "tombstones", "quarantined")
    return {k: manifest.get(k) for k in keys}


def expected_raw_rows(manifest: dict) -> int:
    """Rows the raw partition must hold: the source's count for the interval, plus tombstones
    for keys deleted at the source, minus rows set aside in the quarantine zone."""
    return manifest["source_count"] + (manifest.get("tombstones") or 0) - (manifest.get("quarantined") or 0)
