"""The raw gate: every landed source dataset of a ds, as it sits in the raw zone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from tally import catalog
from tally.core.resources import Resources, check_ds
from tally.gates.common import store_and_raise
from tally.lake.verify import PartitionMismatch
from tally.quality.result import GateResult
from tally.stages.extract import expected_raw_rows


def gate_raw(res: Resources, ds: str, dataset_ids: Iterable[str] | None = None,
             workers: int | None = None) -> list[dict]:
    """The raw gate of several landed datasets (default: every catalog dataset), in one task,
    as the daily DAG's one ``land.gate_raw`` task runs it after the extracts.

    Per dataset: every file its manifest lists is present and holds what the commit recorded
    (per-file rows, key checksum: ``tally.lake.verify``), its GX suite
    (``expectations/raw.<dataset>.json``: row count = the source's count for the window ±
    tombstones and quarantine, keys, domains) and its schema-drift check. Every dataset is
    validated, whatever the others' outcome; the results go to ``ops.validation_results`` in one
    transaction and to the Data Docs site with one index update; one ``DataProblem`` lists every
    failed dataset (each result names its dataset: alerts are raised per dataset).

    On a local lake the datasets are validated in ``workers`` forked processes
    (``$TALLY_GATE_WORKERS``, default: the cores, at most 4; ``tally.quality.parallel``),
    biggest first: GX's validations are CPU-bound and one core each. An S3 lake is validated
    in-process (pyarrow's S3 client must not be used in a forked child)."""
    from tally.quality import docs
    from tally.quality.parallel import fork_each, workers_default

    check_ds(ds)
    ids = [d.dataset_id for d in catalog.all_raw()] if dataset_ids is None else list(dataset_ids)
    workers = workers_default() if workers is None else max(1, workers)
    with docs.batch_publish():
        if workers > 1 and len(ids) > 1 and res.lake.is_local:
            def rows(dataset_id: str) -> int:
                manifest = res.lake.read_manifest(catalog.get(dataset_id).lake_path, ds)
                return int(manifest["row_count"]) if manifest else 0

            biggest_first = sorted(ids, key=rows, reverse=True)
            done = dict(zip(biggest_first, fork_each(lambda d: _raw_results(res, d, ds), biggest_first, workers),
                            strict=True))
            results = [r for dataset_id in ids for r in done[dataset_id]]
        else:
            results = [r for dataset_id in ids for r in _raw_results(res, dataset_id, ds)]
    return store_and_raise(res, ds, results)


def _raw_results(res: Resources, dataset_id: str, ds: str) -> list[GateResult]:
    """One dataset's raw gate results: a partition that is not there (no manifest, or listed
    files gone) is a failed result saying so, not validated further."""
    from tally.quality.parquet import validate_parquet

    dataset = catalog.get(dataset_id)

    def not_there(expectation: str, observed: str, expected: str, sample: list[str], note: str) -> GateResult:
        return GateResult(
            suite=f"raw.{dataset_id}", hop="raw", dataset=dataset_id, success=False, evaluated=1, failed=1,
            failures=[{"expectation": expectation, "column": None, "observed": observed, "expected": expected,
                       "sample": sample, "note": note}],
            run_at=datetime.now(UTC).isoformat(timespec="seconds"),
            target=f"{res.lake.uri}/{res.lake.partition(dataset.lake_path, ds)}")

    manifest = res.lake.read_manifest(dataset.lake_path, ds)
    if manifest is None:
        return [not_there("raw_partition_committed", "no _manifest.json", "a committed manifest", [],
                          "nothing committed in the raw zone: re-run the extract for this ds")]
    listed = res.lake.files(dataset.lake_path, ds)
    missing = [f for f in listed if not res.lake.exists(f)]
    if missing:
        return [not_there("manifest_files_present", f"{len(missing)} of {len(listed)} file(s) the manifest lists "
                          "are gone", "every listed file present", [m.rsplit("/", 1)[-1] for m in missing[:10]],
                          "files were deleted after the commit: re-run the extract for this ds"),
                schema_check(dataset_id, manifest)]
    try:
        result = validate_parquet(f"raw.{dataset_id}", res.lake, dataset.lake_path, ds,
                                  {"source_count": expected_raw_rows(manifest)})
    except PartitionMismatch as exc:  # the files are not what the extract committed
        return [not_there("partition_matches_commit_record", "; ".join(exc.problems),
                          "the rows and key checksum the manifest records", exc.files[:10],
                          "the files changed after the commit: re-run the extract for this ds"),
                schema_check(dataset_id, manifest)]
    return [result, schema_check(dataset_id, manifest)]


def schema_check(dataset_id: str, manifest: dict) -> GateResult:
    """Schema drift at the source (``tally.sources.drift``, recorded by every interval source in
    the manifest's ``schema_drift``), three checks: a removed or a retyped source field fails the
    raw gate (one failure per field); fields added at the source are one **warning** (recorded
    in the result's ``warnings``, shown in its summary and the validation log; the gate passes)."""
    drift = manifest.get("schema_drift") or {}
    removed, retyped, added = drift.get("removed") or [], drift.get("retyped") or {}, drift.get("added") or []
    failures = []
    for name in removed:
        failures.append({"expectation": "source_field_still_exists", "column": name, "observed": "absent",
                         "expected": "present (landed in earlier runs; now null in this ds)"})
    for name, change in retyped.items():
        failures.append({"expectation": "source_field_type_unchanged", "column": name,
                         "observed": change["now"], "expected": change["landed"]})
    warnings = [{"expectation": "source_field_added", "column": list(added), "severity": "warn",
                 "observed": f"{len(added)} field(s) new at the source",
                 "expected": "the fields of the previous ds (a warning: review the catalog)"}] if added else []
    return GateResult(
        suite=f"schema.{dataset_id}", hop="raw", dataset=dataset_id, success=not failures, evaluated=3,
        failed=bool(removed) + bool(retyped), failures=failures, warnings=warnings,
        run_at=manifest.get("committed_at", ""),
        target=f"source schema vs last landed schema; added: {', '.join(added) or 'none'}",
        parameters={"schema_drift": drift},
    )
