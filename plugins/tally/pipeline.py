"""The stages of one logical date (ds), as plain functions over ``Resources``.

The Airflow DAG, the CLI and the tests all call these; none of them imports Airflow.
Every stage records what it saw in the ledger, so a loss shows up at the hop it happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from tally import catalog, ledger, validation_log
from tally.config import PostgresConn, SalesforceConn, dbt_project_dir, tally_home
from tally.lake import Lake
from tally.ledger import Entry

# Spark's curated datasets (docs/curated.md), in the order the jobs build them.
CURATED = ("conformed_customers", "opportunities", "order_links", "rep_rankings", "account_engagement")
# Manifest counts copied to the ledger's curated hop (what on-call needs to see where rows went).
CURATED_COUNTS = ("resolution_counts", "unresolved", "link_counts", "unlinked_reasons", "fx_missing", "skipped",
                  "events", "reporting_currency")
MART_SCHEMA = "marts"
# The marts dbt builds per ds (dbt_project/models/marts), each gated by gate_mart.
MARTS = ("mart_rep_performance", "mart_o2r_pipeline", "mart_revenue_by_country", "mart_account_health")


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


def _record(res: Resources, *entries: Entry, conn: psycopg.Connection | None = None) -> None:
    """Ledger entries, committed (on ``conn`` if given, else on a connection of their own)."""
    if conn is None:
        with psycopg.connect(res.warehouse.conninfo()) as own:
            _record(res, *entries, conn=own)
        return
    for e in entries:
        ledger.record(conn, e)
    conn.commit()


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
def _store_and_raise(res: Resources, ds: str, results: list, conn: psycopg.Connection | None = None) -> list[dict]:
    """Store every result (committed, on ``conn`` if given), then raise one ``DataProblem`` for the failed ones."""
    if conn is None:
        with psycopg.connect(res.warehouse.conninfo()) as own:
            return _store_and_raise(res, ds, results, own)
    for r in results:
        validation_log.store(conn, ds, r, res.run_id)
    conn.commit()
    failed = [r for r in results if not r.success]
    if failed:
        raise DataProblem("; ".join(r.summary() for r in failed), failed)
    return [r.to_dict() for r in results]


def gate_raw(res: Resources, dataset_id: str, ds: str) -> list[dict]:
    """The raw gate of one dataset (``gate_raw_all`` for just that dataset)."""
    return gate_raw_all(res, ds, [dataset_id])


def gate_raw_all(res: Resources, ds: str, dataset_ids: Iterable[str] | None = None,
                 workers: int | None = None) -> list[dict]:
    """The raw gate of several landed datasets (default: every catalog dataset), in one task,
    as the daily DAG's one ``land.gate_raw`` task runs it after the extracts.

    Per dataset: every file its manifest lists is present, its GX suite
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
    return _store_and_raise(res, ds, results)


def _raw_results(res: Resources, dataset_id: str, ds: str) -> list:
    """One dataset's raw gate results: a partition that is not there (no manifest, or listed
    files gone) is a failed result saying so, not validated further."""
    from tally.quality.gate import GateResult, validate_parquet

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
    result = validate_parquet(f"raw.{dataset_id}", res.lake, dataset.lake_path, ds,
                              {"source_count": expected_raw_rows(manifest)})
    return [result, schema_check(dataset_id, manifest)]


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
    """Load every raw dataset and the curated outputs for ds; ledger: the warehouse hop's row
    counts as COPY reports them. The slices' counts and key checksums are measured once, in SQL,
    by ``gate_warehouse`` (which overwrites these entries): measuring here too would scan every
    slice twice."""
    from tally.warehouse import load_partition

    check_ds(ds)
    out, entries = [], []
    for dataset in catalog.all_raw():
        r = load_partition(res.warehouse, res.lake, dataset.lake_path, ds, "raw", dataset.warehouse_table,
                           dataset.key, verify=False)
        entries.append(Entry(ds, dataset.dataset_id, "warehouse", r.row_count, None, {"table": r.table}))
        out.append(r.__dict__)
    for name in CURATED:
        path = f"curated/{name}"
        manifest = res.lake.read_manifest(path, ds)
        if manifest is None:
            raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
        r = load_partition(res.warehouse, res.lake, path, ds, "curated", name, catalog.CURATED_KEYS[name],
                           verify=False)
        entries.append(Entry(ds, name, "warehouse", r.row_count, None, {"table": r.table}))
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
# Business totals each mart must share exactly with the curated zone (warehouse `curated.*`, itself
# gated against the Spark manifests), for one ds: (checks, mart-side SQL, curated-side SQL), each
# side one row with a value per check, so that a table is scanned once for all its totals. Both
# sides are computed in Postgres as numeric/bigint and compared exactly (Decimal ==), never as
# float. `%(ds)s` is the ds; a mart-side entry that is not a full SELECT is a select list over the
# mart's ds slice. A `rows` check's expected value is also the mart suite's `expected_rows`.
MART_RECONCILIATION: dict[str, list[tuple[tuple[str, ...], str, str]]] = {
    "mart_rep_performance": [
        (("rows", "sum_won_amount", "sum_open_pipeline", "sum_won_count", "sum_closed_count", "sum_opportunity_count"),
         "count(*), coalesce(sum(won_amount), 0), coalesce(sum(open_pipeline), 0), coalesce(sum(won_count), 0),"
         " coalesce(sum(closed_count), 0), coalesce(sum(opportunity_count), 0)",
         "SELECT count(*), coalesce(sum(won_amount), 0), coalesce(sum(open_pipeline), 0), coalesce(sum(won_count), 0),"
         " coalesce(sum(closed_count), 0), coalesce(sum(opportunity_count), 0)"
         " FROM curated.rep_rankings WHERE _ds = %(ds)s::date"),
    ],
    "mart_o2r_pipeline": [
        # one row per order, plus one per opportunity without orders
        (("rows", "orders", "sum_order_amount_reporting", "sum_orderless_opportunity_amount_reporting"),
         "count(*), count(order_id), coalesce(sum(order_amount_reporting), 0),"
         " coalesce(sum(opportunity_amount_reporting) FILTER (WHERE order_id IS NULL), 0)",
         "SELECT l.n + c.n, l.n, l.amount, c.amount FROM"
         " (SELECT count(*) AS n, coalesce(sum(amount_reporting), 0) AS amount"
         "  FROM curated.order_links WHERE _ds = %(ds)s::date) AS l,"
         " (SELECT count(*) AS n, coalesce(sum(c.amount_reporting), 0) AS amount"
         "  FROM curated.opportunities c WHERE c._ds = %(ds)s::date AND NOT EXISTS (SELECT 1 FROM curated.order_links o"
         "  WHERE o._ds = %(ds)s::date AND o.opportunity_id = c.opportunity_id)) AS c"),
        (("opportunities_present",),
         "SELECT count(*) FROM curated.opportunities c WHERE c._ds = %(ds)s::date AND EXISTS (SELECT 1 FROM"
         " marts.mart_o2r_pipeline m WHERE m.ds = %(ds)s::date AND m.opportunity_id = c.opportunity_id)",
         "SELECT count(*) FROM curated.opportunities WHERE _ds = %(ds)s::date"),
    ],
    "mart_revenue_by_country": [
        # invoices and payments are not in the curated zone: the live ERP rows as of ds, from the warehouse
        (("sum_bookings_amount", "sum_bookings_count", "sum_bookings_fx_missing", "sum_billings_count",
          "sum_collections_count"),
         "coalesce(sum(bookings_amount), 0), coalesce(sum(bookings_count), 0), coalesce(sum(bookings_fx_missing), 0),"
         " coalesce(sum(billings_count), 0), coalesce(sum(collections_count), 0)",
         "SELECT b.amount, b.n, b.fx_missing, i.n, p.n FROM"
         " (SELECT coalesce(sum(amount_reporting), 0) AS amount, count(*) AS n,"
         "  count(*) FILTER (WHERE amount_reporting IS NULL) AS fx_missing"
         "  FROM curated.order_links WHERE _ds = %(ds)s::date AND status IS DISTINCT FROM 'cancelled') AS b,"
         " (SELECT count(*) AS n FROM (SELECT DISTINCT ON (invoice_id) * FROM raw.erp_invoices WHERE _ds <= %(ds)s::date"
         "  ORDER BY invoice_id, updated_at DESC NULLS LAST, _ds DESC, _loaded_at DESC) AS v"
         "  WHERE NOT coalesce(_deleted, false) AND status IS DISTINCT FROM 'void') AS i,"
         " (SELECT count(*) AS n FROM (SELECT DISTINCT ON (payment_id) * FROM raw.erp_payments WHERE _ds <= %(ds)s::date"
         "  ORDER BY payment_id, updated_at DESC NULLS LAST, _ds DESC, _loaded_at DESC) AS v"
         "  WHERE NOT coalesce(_deleted, false)) AS p"),
    ],
    "mart_account_health": [
        # business rule: open pipeline = not closed, probability 10-89 %, non-zero amount; live accounts
        (("rows", "sum_events_30d", "sum_open_opportunities", "sum_open_pipeline"),
         "count(*), coalesce(sum(events_30d), 0), coalesce(sum(open_opportunities), 0), coalesce(sum(open_pipeline), 0)",
         "SELECT e.n, e.events, o.n, o.amount FROM"
         " (SELECT count(*) AS n, coalesce(sum(events_30d), 0) AS events"
         "  FROM curated.account_engagement WHERE _ds = %(ds)s::date) AS e,"
         " (SELECT count(*) AS n, coalesce(sum(o.amount_reporting), 0) AS amount"
         "  FROM curated.opportunities o WHERE o._ds = %(ds)s::date"
         "  AND NOT coalesce(o.is_closed, false) AND o.probability BETWEEN 10 AND 89 AND o.amount <> 0"
         "  AND o.account_id IN (SELECT account_id FROM curated.account_engagement WHERE _ds = %(ds)s::date)) AS o"),
    ],
}
# Columns gate_mart refreshes statistics of before reconciling: slice dates and join keys.
MART_GATE_STAT_COLUMNS = ("ds", "_ds", "opportunity_id", "account_id")
# The ledger's mart hop: (curated dataset, mart, key column) measured on the mart's ds slice.
MART_LEDGER = (("rep_rankings", "mart_rep_performance", "ranking_id"),
               ("order_links", "mart_o2r_pipeline", "order_id"),
               ("account_engagement", "mart_account_health", "account_id"))


def mart_totals(conn: psycopg.Connection, mart: str, ds: str) -> dict[str, tuple[object, object]]:
    """Every reconciliation check of one mart for ds: ``{check: (observed in the mart, expected
    from the curated zone)}``."""
    from psycopg import sql

    totals: dict[str, tuple[object, object]] = {}
    for checks, mart_side, curated_side in MART_RECONCILIATION[mart]:
        mart_sql = sql.SQL(mart_side) if mart_side.startswith("SELECT ") else sql.SQL(
            "SELECT {} FROM {} WHERE ds = %(ds)s::date").format(sql.SQL(mart_side), sql.Identifier(MART_SCHEMA, mart))
        observed = conn.execute(mart_sql, {"ds": ds}).fetchone()
        expected = conn.execute(curated_side, {"ds": ds}).fetchone()  # type: ignore[call-overload]
        totals.update(zip(checks, zip(observed, expected, strict=True), strict=True))
    return totals


def totals_failures(totals: dict[str, tuple[object, object]]) -> list[dict]:
    """The checks of :func:`mart_totals` whose two sides differ, as gate failures."""
    return [{"expectation": f"mart_{check}_equals_curated", "column": check,
             "observed": str(observed), "expected": str(expected),
             "difference": str(observed - expected) if None not in (observed, expected) else None}  # type: ignore[operator]
            for check, (observed, expected) in totals.items() if observed != expected]


def gate_mart(res: Resources, ds: str, workers: int | None = None) -> list[dict]:
    """Every mart's ds slice: its GX suite (`expectations/mart.<mart>.json`, in SQL) and its business
    totals reconciled exactly with the curated zone; ledger: mart hop. One result per mart.

    The suites run in ``workers`` forked processes (``$TALLY_GATE_WORKERS``, default: the cores,
    at most 4; ``tally.quality.parallel``), biggest mart first."""
    from psycopg import sql

    from tally.checksum import postgres_sql
    from tally.quality import docs
    from tally.quality.gate import GateResult, validate_postgres_table
    from tally.quality.parallel import fork_each, workers_default
    from tally.warehouse import ensure_ops, measure

    check_ds(ds)
    results, entries = [], []
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure_ops(conn)  # the checksum helper (the loader creates it too)
        for mart in MARTS:
            if conn.execute("SELECT to_regclass(%s)", (f"{MART_SCHEMA}.{mart}",)).fetchone()[0] is None:
                raise DataProblem(f"{MART_SCHEMA}.{mart} does not exist: did dbt build it?")
        # The tables were just written (COPY, dbt) and autovacuum has not sampled them yet: the
        # planner misjudged an IN (subquery) check below as tiny and nested loops over it, 43 s
        # instead of 0.05 s at 100k opportunities. Fresh statistics, and no nested loops or JIT
        # for these whole-slice aggregates. Statistics of the columns the checks filter and join
        # on only (row counts come with any ANALYZE): a whole-table ANALYZE also samples every
        # text and money column, ~6x the time (0.9 s of the gate at 100k opportunities).
        tables = [*(f"{MART_SCHEMA}.{m}" for m in MARTS), *(f"curated.{c}" for c in CURATED)]
        stat_columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
                "SELECT n.nspname || '.' || c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE a.attrelid = ANY(%s::regclass[])"
                " AND a.attname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (tables, list(MART_GATE_STAT_COLUMNS))).fetchall():
            stat_columns.setdefault(table, []).append(column)
        for table in tables:
            schema, name = table.split(".")
            conn.execute(sql.SQL("ANALYZE {} ({})").format(
                sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, stat_columns[table]))))
        conn.commit()  # the fresh statistics serve the GX validations' own sessions too
        conn.execute("SET LOCAL enable_nestloop = off")
        conn.execute("SET LOCAL jit = off")
        totals = {mart: mart_totals(conn, mart, ds) for mart in MARTS}

        def validate(mart: str) -> GateResult:
            params = {"expected_rows": totals[mart]["rows"][1]} if "rows" in totals[mart] else {}
            return validate_postgres_table(f"mart.{mart}", res.warehouse.conninfo(), MART_SCHEMA, mart, params,
                                           where={"ds": ds})

        with docs.batch_publish():  # one Data Docs index update for the four marts
            workers = workers_default() if workers is None else max(1, workers)
            if workers > 1:  # GX's Python work in one mart's process overlaps Postgres' work on another's
                biggest_first = sorted(MARTS, key=lambda m: -int(totals[m].get("rows", (0, 0))[1] or 0))
                suites = dict(zip(biggest_first, fork_each(validate, biggest_first, workers), strict=True))
            else:
                suites = {mart: validate(mart) for mart in MARTS}
        for mart in MARTS:
            suite, failed = suites[mart], totals_failures(totals[mart])
            results.append(GateResult(
                suite=suite.suite, hop="mart", dataset=mart, success=suite.success and not failed,
                evaluated=suite.evaluated + len(totals[mart]), failed=suite.failed + len(failed),
                failures=suite.failures + failed, run_at=suite.run_at,
                target=f"{suite.target}; totals vs curated.* where _ds = {ds}", parameters=suite.parameters))
        for dataset, mart, key in MART_LEDGER:
            if key == "order_id":  # o2r: only order flows carry an order (one row each)
                count, checksum = conn.execute(
                    f"SELECT count(*), {postgres_sql('order_id', conn.info.server_version)} FROM {MART_SCHEMA}.mart_o2r_pipeline"  # noqa: S608
                    " WHERE ds = %s AND order_id IS NOT NULL", (ds,)).fetchone()
                entries.append(Entry(ds, dataset, "mart", count, checksum, {"table": f"{MART_SCHEMA}.{mart}"}))
                continue
            m = measure(conn, MART_SCHEMA, mart, key, ds, ds_column="ds")
            entries.append(Entry(ds, dataset, "mart", m.row_count, m.key_checksum, {"table": m.table}))
    _record(res, *entries)
    return _store_and_raise(res, ds, results)


# -- curated gate --------------------------------------------------------------------
def live_records(lake: Lake, dataset_id: str, ds: str, columns: tuple[str, ...] = ()) -> dict[object, dict]:
    """Records alive as of ds, computed from the raw zone alone (latest version per key: greatest
    cursor, then greatest ds; tombstones removed), as ``{key: {column: value}}`` for ``columns`` —
    the gate's own expectation of what Spark's curated snapshots must contain."""
    import pyarrow.compute as pc

    dataset = catalog.get(dataset_id)
    flag = [dataset.deleted_flag] if dataset.deleted_flag else []
    cols = list(dict.fromkeys([dataset.key, dataset.cursor, *flag, *columns]))
    latest: dict[object, tuple] = {}
    for part_ds in lake.committed(dataset.lake_path, up_to=ds):
        table = lake.read_table(dataset.lake_path, part_ds, columns=cols)
        if flag:
            table = table.set_column(2, flag[0], pc.fill_null(table.column(2), False))
        for row in zip(*(table.column(c).to_pylist() for c in cols), strict=True):
            key, cursor = row[0], row[1]
            have = latest.get(key)
            if have is None or (cursor, part_ds) >= (have[0], have[1]):
                latest[key] = (cursor, part_ds, bool(row[2]) if flag else False, row)
    return {k: {c: row[cols.index(c)] for c in columns} for k, (_, _, deleted, row) in latest.items() if not deleted}


def live_keys(lake: Lake, dataset_id: str, ds: str) -> set:
    """The keys of ``live_records``."""
    return set(live_records(lake, dataset_id, ds))


def expected_curated_keys(lake: Lake, ds: str) -> dict[str, list[str]]:
    """The key of every row each curated dataset must hold for ds, derived from the raw zone
    independently of Spark (docs/curated.md): one row per live ERP customer, live opportunity,
    live ERP order and live account; one per (owner, quarter of CloseDate) of the live
    opportunities that have both."""
    opportunities = live_records(lake, "salesforce.Opportunity", ds, ("OwnerId", "CloseDate"))
    rankings = {f"{o['OwnerId']}:{o['CloseDate'].year}-Q{(o['CloseDate'].month - 1) // 3 + 1}"
                for o in opportunities.values() if o["OwnerId"] is not None and o["CloseDate"] is not None}
    return {
        "conformed_customers": [str(k) for k in live_keys(lake, "erp.customers", ds)],
        "opportunities": [str(k) for k in opportunities],
        "order_links": [str(k) for k in live_keys(lake, "erp.sales_orders", ds)],
        "rep_rankings": sorted(rankings),
        "account_engagement": [str(k) for k in live_keys(lake, "salesforce.Account", ds)],
    }


def _accounting_failures(name: str, manifest: dict) -> list[dict]:
    """Counts in a curated manifest that must add up: every row is in exactly one bucket."""
    def check(what: str, observed, expected) -> list[dict]:
        return [] if observed == expected else [{"expectation": f"manifest_{what}_add_up", "column": None,
                                                  "observed": observed, "expected": expected}]

    rows, out = manifest["row_count"], []
    if name == "conformed_customers":
        counts = manifest.get("resolution_counts") or {}
        out += check("resolution_counts", sum(counts.values()), rows)
        out += check("unresolved", manifest.get("unresolved"),
                     counts.get("missing_ref", 0) + counts.get("unknown_account", 0))
    elif name == "order_links":
        links = manifest.get("link_counts") or {}
        out += check("link_counts", sum(links.values()), rows)
        out += check("unlinked_reasons", sum((manifest.get("unlinked_reasons") or {}).values()),
                     links.get("unlinked", 0))
    elif name == "account_engagement":
        ev = manifest.get("events") or {}
        out += check("events", ev.get("events_read"), sum(ev.get(k, 0) for k in
                                                          ("duplicate_events", "events_matched",
                                                           "events_unmatched_account")))
    return out


def gate_curated(res: Resources, ds: str) -> list[dict]:
    """Validate Spark's outputs against what the raw zone implies; ledger: curated hop.

    Per dataset: the GX suite (row count = the live records the gate computed itself, keys,
    domains), and a check that the manifest's key checksum equals the checksum of the expected
    keys and that its counts add up (``resolution_counts``, ``link_counts``, events)."""
    from tally.checksum import checksum
    from tally.quality import docs
    from tally.quality.gate import GateResult, validate_parquet

    check_ds(ds)
    expected = expected_curated_keys(res.lake, ds)
    results, entries = [], []
    with docs.batch_publish():  # one Data Docs index update for the five datasets
        for name in CURATED:
            path = f"curated/{name}"
            manifest = res.lake.read_manifest(path, ds)
            if manifest is None:
                raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
            missing_files = [f for f in res.lake.files(path, ds) if not res.lake.exists(f)]
            if missing_files:
                raise DataProblem(f"curated.{name} ds={ds}: {len(missing_files)} file(s) the manifest lists are gone")
            want_rows, want_checksum = len(expected[name]), checksum(expected[name])
            results.append(validate_parquet(f"curated.{name}", res.lake, path, ds, {"expected_rows": want_rows}))
            failures = _accounting_failures(name, manifest)
            if manifest["key_checksum"] != want_checksum:
                failures.append({"expectation": "curated_key_checksum_equals_live_raw_keys",
                                 "column": catalog.CURATED_KEYS[name], "observed": manifest["key_checksum"],
                                 "expected": want_checksum})
            results.append(GateResult(
                suite=f"accounting.curated.{name}", hop="curated", dataset=name, success=not failures,
                evaluated=2, failed=len(failures), failures=failures, run_at=datetime.now(UTC).isoformat(),
                target=f"{res.lake.uri}/{path}/ds={ds}/_manifest.json"))
            counts = {k: v for k, v in manifest.items() if k in CURATED_COUNTS}
            entries.append(Entry(ds, name, "curated", manifest["row_count"], manifest["key_checksum"],
                                 {"inputs": manifest.get("inputs", {}), "expected_rows": want_rows, **counts}))
    _record(res, *entries)
    return _store_and_raise(res, ds, results)


# -- warehouse gate ------------------------------------------------------------------
# Connections the warehouse gate measures its slices over, concurrently: each measurement is one
# md5 scan, CPU-bound in the server; the biggest slices go first.
WAREHOUSE_GATE_CONNECTIONS = 2


def gate_warehouse(res: Resources, ds: str) -> list[dict]:
    """Every loaded table's ds slice, counted and checksummed in the database, equals its manifest."""
    from concurrent.futures import ThreadPoolExecutor

    from tally.quality.gate import GateResult
    from tally.warehouse import ensure_ops, measure

    check_ds(ds)
    targets = [(d.dataset_id, d.lake_path, "raw", d.warehouse_table, catalog.snake_case(d.key))
               for d in catalog.all_raw()]
    targets += [(name, f"curated/{name}", "curated", name, catalog.CURATED_KEYS[name]) for name in CURATED]
    manifests = {t[0]: res.lake.read_manifest(t[1], ds) for t in targets}
    todo = [t for t in targets if manifests[t[0]] is not None]
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure_ops(conn)  # the checksum helper (the loader creates it too)
        lock, idle, extra = threading.Lock(), [conn], []

        def measured(target: tuple) -> object:
            with lock:
                use = idle.pop() if idle else None
            if use is None:
                use = psycopg.connect(res.warehouse.conninfo(), autocommit=True)
                extra.append(use)
            try:
                return measure(use, target[2], target[3], target[4], ds)
            finally:
                with lock:
                    idle.append(use)

        biggest_first = sorted(todo, key=lambda t: -manifests[t[0]]["row_count"])
        try:
            with ThreadPoolExecutor(max(1, min(WAREHOUSE_GATE_CONNECTIONS, len(todo)))) as pool:
                got_by = dict(zip((t[0] for t in biggest_first), pool.map(measured, biggest_first), strict=True))
        finally:
            for other in extra:
                other.close()
        results, entries = [], []
        for dataset_id, _path, schema, table, key in todo:
            manifest, got = manifests[dataset_id], got_by[dataset_id]
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
        _record(res, *entries, conn=conn)
        return _store_and_raise(res, ds, results, conn)
