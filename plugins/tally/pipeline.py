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
from datetime import date, datetime
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
    _record(
        res,
        Entry(ds, dataset_id, "source", manifest["source_count"], None, details),
        Entry(ds, dataset_id, "raw", manifest["row_count"], manifest["key_checksum"],
              {**details, "files": manifest["files"]}),
    )
    keys = ("dataset", "row_count", "source_count", "key_checksum", "mode", "overlap_rows", "api", "schema_drift")
    return {k: manifest.get(k) for k in keys}


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
    result = validate_parquet(f"raw.{dataset_id}", res.lake, dataset.lake_path, ds,
                              {"source_count": manifest["source_count"]})
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
        entries.append(Entry(ds, name, "curated", manifest["row_count"], manifest["key_checksum"],
                             {"inputs": manifest.get("inputs", {})}))
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
        raise DataProblem(f"dbt build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")


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
