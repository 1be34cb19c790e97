"""The stages of one logical date (ds), as plain functions over ``Resources``.

The Airflow DAG, the CLI and the tests all call these; none of them imports Airflow.
Every stage records what it saw in the ledger, so a loss shows up at the hop it happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from tally import catalog, ledger, validation_log
from tally.config import PostgresConn, SalesforceConn, dbt_project_dir, tally_home
from tally.lake import Lake
from tally.ledger import Entry

CURATED = ("opportunities", "rep_rankings")
MART = ("marts", "mart_rep_performance")


class DataProblem(Exception):
    """A gate found the data wrong: not transient, retrying will not help."""

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = results or []


@dataclass
class Resources:
    lake: Lake
    warehouse: PostgresConn
    erp: PostgresConn | None = None
    salesforce: SalesforceConn | None = None
    run_id: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


def check_ds(ds: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", ds):
        raise ValueError(f"ds must be YYYY-MM-DD, got {ds!r}")
    date.fromisoformat(ds)
    return ds


def _record(res: Resources, *entries: Entry) -> None:
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        for e in entries:
            ledger.record(conn, e)


# -- extract -------------------------------------------------------------------------
def extract(res: Resources, dataset_id: str, ds: str, start: datetime, end: datetime,
            progress=None) -> dict:
    """Land one source dataset for the interval; ledger: source and raw hops."""
    check_ds(ds)
    dataset = catalog.get(dataset_id)
    if dataset.source == "salesforce":
        from tally.sources.salesforce import SalesforceSource

        if res.salesforce is None:
            raise ValueError("no Salesforce connection configured")
        manifest = SalesforceSource(res.salesforce).extract(res.lake, dataset, ds, start, end, progress=progress)
    else:
        from tally.sources import erp

        if res.erp is None:
            raise ValueError("no ERP connection configured")
        manifest = erp.extract(res.erp, res.lake, dataset, ds, start, end)
    # Rows re-read from the overlap window are counted, but kept apart: they were already
    # counted in the previous ds, and the curated zone keeps one (latest) version of each.
    details = {"watermark": manifest["watermark"], "mode": manifest["mode"],
               "overlap_rows": manifest.get("overlap_rows", 0), "api": manifest.get("api"),
               "schema_drift": manifest.get("schema_drift")}
    if "tombstones" in manifest or "quarantined" in manifest:  # ERP: deletes found by key, rows set aside
        details |= {"source_count": manifest["source_count"], "tombstones": manifest.get("tombstones", 0),
                    "quarantined": manifest.get("quarantined", 0),
                    "quarantine": (manifest.get("quarantine") or {}).get("reasons", {})}
    _record(
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


# -- gates ---------------------------------------------------------------------------
def _store_and_raise(res: Resources, ds: str, results: list) -> list[dict]:
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        for r in results:
            validation_log.store(conn, ds, r, res.run_id)
    failed = [r for r in results if not r.success]
    if failed:
        raise DataProblem("; ".join(r.summary() for r in failed), failed)
    return [r.to_dict() for r in results]


def gate_raw(res: Resources, dataset_id: str, ds: str) -> list[dict]:
    from tally.quality.gate import validate_parquet

    dataset = catalog.get(dataset_id)
    manifest = res.lake.read_manifest(dataset.lake_path, ds)
    if manifest is None:
        raise DataProblem(f"{dataset_id} ds={ds}: nothing committed in the raw zone")
    missing = [f for f in res.lake.files(dataset.lake_path, ds) if not res.lake.exists(f)]
    if missing:
        raise DataProblem(f"raw.{dataset_id} ds={ds}: {len(missing)} of {len(manifest['files'])} file(s) the "
                          f"manifest lists are gone ({', '.join(m.rsplit('/', 1)[-1] for m in missing[:3])}); "
                          "re-run the extract for this ds")
    result = validate_parquet(f"raw.{dataset_id}", res.lake, dataset.lake_path, ds,
                              {"source_count": expected_raw_rows(manifest)})
    return _store_and_raise(res, ds, [result, schema_check(dataset_id, manifest)])


def schema_check(dataset_id: str, manifest: dict):
    """Removed or retyped source fields fail the raw gate; added fields are only reported."""
    from tally.quality.gate import GateResult

    drift = manifest.get("schema_drift") or {}
    failures = []
    for name in drift.get("removed", []):
        failures.append({"expectation": "source_field_still_exists", "column": name, "observed": "absent",
                         "expected": "present (landed in earlier runs; now null in this ds)"})
    for name, change in (drift.get("retyped") or {}).items():
        failures.append({"expectation": "source_field_type_unchanged", "column": name,
                         "observed": change["now"], "expected": change["landed"]})
    return GateResult(
        suite=f"schema.{dataset_id}", hop="raw", dataset=dataset_id, success=not failures, evaluated=1,
        failed=1 if failures else 0, failures=failures, run_at=manifest.get("committed_at", ""),
        target=f"describe vs last landed schema; added: {', '.join(drift.get('added', [])) or 'none'}",
    )


# -- load ----------------------------------------------------------------------------
def load(res: Resources, ds: str) -> list[dict]:
    """Load every raw dataset and the curated outputs for ds; ledger: curated and warehouse."""
    from tally.warehouse import load_partition

    check_ds(ds)
    out, entries = [], []
    for dataset in catalog.all_raw():
        r = load_partition(res.warehouse, res.lake, dataset.lake_path, ds, "raw", dataset.warehouse_table,
                           dataset.key)
        entries.append(Entry(ds, dataset.dataset_id, "warehouse", r.row_count, r.key_checksum, {"table": r.table}))
        out.append(r.__dict__)
    for name in CURATED:
        path = f"curated/{name}"
        manifest = res.lake.read_manifest(path, ds)
        if manifest is None:
            raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
        r = load_partition(res.warehouse, res.lake, path, ds, "curated", name, catalog.CURATED_KEYS[name])
        entries.append(Entry(ds, name, "warehouse", r.row_count, r.key_checksum, {"table": r.table}))
        out.append(r.__dict__)
    _record(res, *entries)
    return out


# -- dbt -----------------------------------------------------------------------------
def dbt_env(res: Resources) -> dict[str, str]:
    wh = res.warehouse
    return {
        "TALLY_DBT_HOST": wh.host, "TALLY_DBT_PORT": str(wh.port), "TALLY_DBT_USER": wh.user,
        "TALLY_DBT_PASSWORD": wh.password, "TALLY_DBT_DBNAME": wh.dbname,
    }


def dbt_build(res: Resources, ds: str, select: str | None = None) -> None:
    check_ds(ds)
    work = tally_home() / "dbt"
    dbt = str(Path(sys.executable).parent / "dbt")
    cmd = [dbt, "build", "--project-dir", str(dbt_project_dir()), "--profiles-dir", str(dbt_project_dir()),
           "--target-path", str(work / "target"), "--vars", f'{{"ds": "{ds}"}}']
    if select:
        cmd += ["--select", select]
    env = {**os.environ, **dbt_env(res), "DBT_LOG_PATH": str(work / "logs"), **res.extra_env}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(proc.stdout[-20000:])
    if proc.returncode != 0:
        failed = [line for line in proc.stdout.splitlines() if re.search(r"\b(ERROR|FAIL)\b", line)]
        raise DataProblem(f"dbt build failed (exit {proc.returncode}); failing nodes:\n" + "\n".join(failed[-30:])
                          + f"\n--- tail ---\n{proc.stdout[-2000:]}\n{proc.stderr[-1000:]}")


# -- mart gate -----------------------------------------------------------------------
def gate_mart(res: Resources, ds: str) -> list[dict]:
    """Validate the mart against the curated zone; ledger: mart hop."""
    import pyarrow.compute as pc

    from tally.quality.gate import validate_postgres_table
    from tally.warehouse import measure

    check_ds(ds)
    curated = res.lake.read_table("curated/rep_rankings", ds, columns=["won_amount"])
    expected_won = pc.sum(curated.column("won_amount")).as_py() or 0
    result = validate_postgres_table(
        "mart.mart_rep_performance", res.warehouse.conninfo(), MART[0], MART[1],
        {"expected_rows": curated.num_rows, "expected_won_amount": float(expected_won)},
        where={"ds": ds},
    )
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        m = measure(conn, MART[0], MART[1], "owner_id", ds, ds_column="ds")
        ledger.record(conn, Entry(ds, "rep_rankings", "mart", m.row_count, m.key_checksum, {"table": m.table}))
    return _store_and_raise(res, ds, [result])


# -- curated gate --------------------------------------------------------------------
def live_keys(lake: Lake, dataset_id: str, ds: str) -> set[str]:
    """Keys alive as of ds, computed from the raw zone alone (latest version per key, tombstones
    removed) — the gate's own expectation of what Spark's curated snapshot must contain."""
    import pyarrow.compute as pc

    dataset = catalog.get(dataset_id)
    cols = [dataset.key, dataset.cursor] + ([dataset.deleted_flag] if dataset.deleted_flag else [])
    latest: dict[str, tuple] = {}
    for part_ds in lake.committed(dataset.lake_path, up_to=ds):
        table = lake.read_table(dataset.lake_path, part_ds, columns=cols)
        if dataset.deleted_flag:
            table = table.set_column(2, dataset.deleted_flag, pc.fill_null(table.column(2), False))
        for row in zip(*(table.column(c).to_pylist() for c in cols), strict=True):
            key, cursor = row[0], row[1]
            deleted = bool(row[2]) if dataset.deleted_flag else False
            have = latest.get(key)
            if have is None or (cursor, part_ds) >= (have[0], have[1]):
                latest[key] = (cursor, part_ds, deleted)
    return {k for k, (_, _, deleted) in latest.items() if not deleted}


def gate_curated(res: Resources, ds: str) -> list[dict]:
    """Validate Spark's outputs against what the raw zone implies; ledger: curated hop."""
    from tally.quality.gate import validate_parquet

    check_ds(ds)
    expected = {
        "opportunities": len(live_keys(res.lake, "salesforce.Opportunity", ds)),
        "rep_rankings": len(live_keys(res.lake, "salesforce.User", ds)),
    }
    results, entries = [], []
    for name in CURATED:
        path = f"curated/{name}"
        manifest = res.lake.read_manifest(path, ds)
        if manifest is None:
            raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
        missing_files = [f for f in res.lake.files(path, ds) if not res.lake.exists(f)]
        if missing_files:
            raise DataProblem(f"curated.{name} ds={ds}: {len(missing_files)} file(s) the manifest lists are gone")
        results.append(validate_parquet(f"curated.{name}", res.lake, path, ds, {"expected_rows": expected[name]}))
        entries.append(Entry(ds, name, "curated", manifest["row_count"], manifest["key_checksum"],
                             {"inputs": manifest.get("inputs", {}), "expected_rows": expected[name]}))
    _record(res, *entries)
    return _store_and_raise(res, ds, results)


# -- warehouse gate ------------------------------------------------------------------
def gate_warehouse(res: Resources, ds: str) -> list[dict]:
    """Every loaded table's ds slice, counted and checksummed in the database, equals its manifest."""
    from tally.quality.gate import GateResult
    from tally.warehouse import measure

    check_ds(ds)
    targets = [(d.dataset_id, d.lake_path, "raw", d.warehouse_table, catalog.snake_case(d.key))
               for d in catalog.all_raw()]
    targets += [(name, f"curated/{name}", "curated", name, catalog.CURATED_KEYS[name]) for name in CURATED]
    results, entries = [], []
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        for dataset_id, path, schema, table, key in targets:
            manifest = res.lake.read_manifest(path, ds)
            if manifest is None:
                continue
            got = measure(conn, schema, table, key, ds)
            failures = []
            if got.row_count != manifest["row_count"]:
                failures.append({"expectation": "warehouse_row_count_equals_manifest", "column": None,
                                 "observed": got.row_count, "expected": manifest["row_count"]})
            if got.key_checksum != manifest["key_checksum"]:
                failures.append({"expectation": "warehouse_key_checksum_equals_manifest", "column": key,
                                 "observed": got.key_checksum, "expected": manifest["key_checksum"]})
            results.append(GateResult(
                suite=f"warehouse.{dataset_id}", hop="warehouse", dataset=dataset_id, success=not failures,
                evaluated=2, failed=len(failures), failures=failures, run_at=datetime.now(UTC).isoformat(),
                target=f"{schema}.{table} where _ds = {ds}"))
            entries.append(Entry(ds, dataset_id, "warehouse", got.row_count, got.key_checksum, {"table": got.table}))
    _record(res, *entries)
    return _store_and_raise(res, ds, results)
