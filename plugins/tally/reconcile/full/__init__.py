"""Full reconciliation: the ERP's current rows vs the warehouse, by key and version.

The per-ds checks (gates, ledger, ``tally.reconcile.keys``) prove each hop kept what the previous
hop handed it. They cannot see a row the extractor never read: one committed late with an old
``updated_at`` (beyond the overlap window), a hard delete missed, a slice lost and re-loaded
wrong. This compares the source's current state with the warehouse's, for every key:

* **source**: the ERP table now (one read-only snapshot);
* **warehouse**: the latest landed version of each key in ``raw.erp_<table>``, tombstones
  excluded (kept in ``reconcile.erp_<table>_current``, see :mod:`.current`);
* **version**: ``updated_at``, to the microsecond.

The comparison is pushed down as segment checksums with bisection (:mod:`.bisect`,
:mod:`.sides`): only a few numbers per segment leave each database until the differing
segments are small, then only those segments' keys and versions.

Each differing key is classified against the **cutoff**, the end of the newest ds the
warehouse has loaded (``L``): rows the source changed at or after it are **in flight** (the
next daily run lands them) and are only counted. The rest are

* **missing**: the source has the key, the warehouse has no live version of it;
* **extra**: the warehouse has a live version, the source no longer has the key;
* **stale**: both have it, with different versions;
* **quarantined**: missing or stale, but the source's version is in the quarantine zone
  (accounted for: it failed typing when extracted);
* **unversioned**: the source row has no ``updated_at`` (no incremental read will ever take it);
* **null_key**: source rows whose key is NULL. They are outside every key range, so the
  segment checksums never see them; they are counted apart (``SourceSide.null_keys``, in the
  same snapshot), included in ``source_rows`` and reported: no run can land them (the extract
  quarantines them) and no heal can fix them (they have no key to compare).

Missing, extra and stale keys are **healed** (:mod:`.heal`) by re-extracting exactly those keys
into partition ``L`` of the raw zone and reloading ``L``; then the table is compared again and
what remains is reported. Keys a heal cannot fix (the warehouse's version is newer than the
source's, a tombstone newer than the source's row, unversioned rows) are reported as left.

Salesforce objects are not covered: SOQL has no aggregate that could checksum (Id,
SystemModstamp) per key range, so a comparison would download every Id; see
``docs/reconciliation.md``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tally import catalog
from tally.catalog import Dataset

CATEGORIES = ("missing", "extra", "stale", "unversioned", "null_key", "quarantined", "in_flight")
PROBLEMS = ("missing", "extra", "stale", "unversioned", "null_key")  # what a reconciliation alerts on
SAMPLE = 10


@dataclass
class KeyIssue:
    key: int
    category: str
    source_us: int | None  # the source's version, microseconds since the epoch
    warehouse_us: int | None  # the warehouse's latest version (live or tombstone)
    warehouse_ds: str | None
    healable: bool
    note: str = ""


@dataclass
class TableReport:
    dataset: str
    status: str  # "ok", "healed", "differences", "not_loaded"
    frontier: str | None = None  # newest ds loaded (the partition heals land in)
    cutoff: str | None = None
    flavour: str = ""
    found: dict[str, int] = field(default_factory=dict)  # category -> keys
    samples: dict[str, list[int]] = field(default_factory=dict)
    healed: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)  # after the heal (or without one: as found)
    left_samples: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source_rows: int = 0  # every row of the source table, NULL-key rows included
    null_key_rows: int = 0  # of which without a key (category ``null_key``)
    warehouse_rows: int = 0
    heal: dict | None = None
    stats: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def problems(self) -> int:
        return sum(self.found.get(c, 0) for c in PROBLEMS)

    @property
    def problems_left(self) -> int:
        return sum(self.left.get(c, 0) for c in PROBLEMS)


@dataclass(frozen=True)
class Options:
    heal: bool = True
    timezone: str = "UTC"  # the ERP's time zone for timestamps without an offset
    top_buckets: int = 1024
    factor: int = 16
    leaf_rows: int = 2000
    batch_size: int = 50_000


def erp_datasets(only: list[str] | None = None) -> list[Dataset]:
    """The ERP datasets to reconcile (``only``: ids like ``erp.customers`` or table names)."""
    if not only:
        return list(catalog.ERP.values())
    out = []
    for name in only:
        dataset = catalog.get(name if "." in name else f"erp.{name}")
        if dataset.source != "erp":
            raise ValueError(f"{dataset.dataset_id}: full reconciliation covers the ERP tables only")
        out.append(dataset)
    return out


def cutoff_of(frontier: str) -> datetime:
    """The end of the frontier ds's interval (a UTC day, as ``tally_daily`` extracts it)."""
    day = datetime.fromisoformat(frontier).replace(tzinfo=UTC)
    return day + timedelta(days=1)


# -- classification -------------------------------------------------------------------------------
def classify(differences: dict[int, tuple[Any, Any]], cutoff_us: int,
             quarantined: dict[int, set] | None = None) -> list[KeyIssue]:
    """Turn the diff's differing keys into issues (see the module doc for the categories).

    ``differences``: key -> (source row ``(version_us or None,)`` or None when the source lacks
    the key, warehouse row ``(version_us, deleted, ds)`` or None)."""
    out = []
    quarantined = quarantined or {}
    for key in sorted(differences):
        s_row, w_row = differences[key]
        w_us, w_deleted, w_ds = w_row if w_row is not None else (None, False, None)
        w_live = w_us if w_row is not None and not w_deleted else None
        if s_row is None:  # the source no longer has the key
            healable = w_live is not None and w_live < cutoff_us
            out.append(KeyIssue(key, "extra", None, w_us, w_ds, healable,
                                "" if healable else "warehouse version is at or after the cutoff"))
            continue
        s_us = s_row[0]
        if s_us is None:
            out.append(KeyIssue(key, "unversioned", None, w_us, w_ds, False, "the source row has no updated_at"))
        elif s_us >= cutoff_us:
            out.append(KeyIssue(key, "in_flight", s_us, w_us, w_ds, False, "changed after the cutoff"))
        elif s_us in quarantined.get(key, ()) or None in quarantined.get(key, ()):
            out.append(KeyIssue(key, "quarantined", s_us, w_us, w_ds, False, "in the quarantine zone"))
        elif w_live is None:
            behind = w_us is not None and w_us > s_us
            out.append(KeyIssue(key, "missing", s_us, w_us, w_ds, not behind,
                                "behind a newer tombstone" if behind else ""))
        else:
            newer = s_us > w_live
            out.append(KeyIssue(key, "stale", s_us, w_us, w_ds, newer,
                                "" if newer else "the warehouse's version is newer than the source's"))
    return out


# -- the quarantine zone ----------------------------------------------------------------------------
def quarantined_versions(lake, dataset: Dataset, keys: set[int], timezone: str = "UTC") -> dict[int, set]:
    """``{key: {version_us or None}}`` for ``keys`` found in any committed quarantine partition."""
    import pyarrow.compute as pc

    from tally.reconcile.full.sides import to_us
    from tally.sources.erp.convert import cast_tolerant, caster
    from tally.sources.erp.extract import quarantine_path

    out: dict[int, set] = {}
    if not keys:
        return out
    path = quarantine_path(dataset)
    cursor = next(f for f in dataset.fields if f.name == dataset.cursor)
    for ds in lake.committed(path):
        table = lake.read_table(path, ds, columns=[dataset.key, dataset.cursor])
        typed_keys, _ = cast_tolerant(pc.utf8_trim_whitespace(table.column(0).combine_chunks()),
                                      lambda a: pc.cast(a, "int64"), _int64())
        versions, _ = cast_tolerant(table.column(1).combine_chunks(), caster(cursor, timezone),
                                    _timestamp())
        for k, v in zip(typed_keys.to_pylist(), versions.to_pylist(), strict=True):
            if k is not None and k in keys:
                out.setdefault(k, set()).add(None if v is None else to_us(v))
    return out


def _int64():
    import pyarrow as pa

    return pa.int64()


def _timestamp():
    from tally.lake import ARROW_TYPES

    return ARROW_TYPES["datetime"]


# -- one table --------------------------------------------------------------------------------------
def _flavour(erp, warehouse_conn) -> str:
    from tally.core.config import PostgresConn
    from tally.reconcile.full.sides import pg_has_fast_hash

    if not isinstance(erp, PostgresConn) or not pg_has_fast_hash(warehouse_conn):
        return "md5"
    import psycopg

    with psycopg.connect(erp.conninfo()) as c:
        return "pg" if pg_has_fast_hash(c) else "md5"


def loaded_frontier(conn, lake, dataset: Dataset, newest_slice: str | None) -> str | None:
    """The newest ds loaded into the warehouse: its newest slice, or a later ds the ledger says
    was loaded (a ds in which nothing changed loads an empty slice, invisible in the table) and
    that is committed in the lake."""
    frontier = newest_slice
    if conn.execute("SELECT to_regclass('ops.ledger')").fetchone()[0] is not None:
        for (ds,) in conn.execute("SELECT ds::text FROM ops.ledger WHERE dataset = %s AND hop = 'warehouse'"
                                  " AND ds > coalesce(%s::date, '-infinity') ORDER BY ds DESC",
                                  (dataset.dataset_id, newest_slice)).fetchall():
            if lake.read_manifest(dataset.lake_path, ds) is not None:
                return ds
    return frontier


def compare(erp, warehouse, dataset: Dataset, options: Options, flavour: str, progress=None):
    """One diff of ``dataset``: the ERP table vs ``reconcile.<table>_current``; the result's
    ``null_keys`` is the source's rows without a key (in the same snapshot)."""
    import psycopg

    from tally.reconcile.full.bisect import diff
    from tally.reconcile.full.sides import SourceSide, WarehouseSide
    from tally.sources.erp.dialect import open_session

    with open_session(erp, options.timezone) as s, psycopg.connect(warehouse.conninfo()) as wconn:
        wconn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        wconn.read_only = True
        with wconn.transaction():
            source = SourceSide(s, dataset, flavour, options.timezone)
            result = diff(source, WarehouseSide(wconn, dataset, flavour),
                          top_buckets=options.top_buckets, factor=options.factor, leaf_rows=options.leaf_rows,
                          progress=progress)
            result.null_keys = source.null_keys()
            return result


def _count(issues: list[KeyIssue], null_keys: int = 0) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Keys per category (and ``null_keys`` rows as ``null_key``, without samples: they have no key)."""
    counts: dict[str, int] = {"null_key": null_keys} if null_keys else {}
    samples: dict[str, list[int]] = {}
    for i in issues:
        counts[i.category] = counts.get(i.category, 0) + 1
        if len(samples.setdefault(i.category, [])) < SAMPLE:
            samples[i.category].append(i.key)
    return counts, samples


def reconcile_table(erp, lake, warehouse, dataset: Dataset, options: Options | None = None,
                    progress=None) -> TableReport:
    """Compare ``dataset`` with the warehouse, heal what can be healed, compare again."""
    import psycopg

    from tally.reconcile.full import current
    from tally.reconcile.full.sides import to_us

    options = options or Options()
    report = TableReport(dataset.dataset_id, "ok")
    say = progress or (lambda _msg: None)
    began = time.monotonic()
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as wconn:
        refreshed = current.refresh(wconn, dataset)
        report.stats["refresh"] = asdict(refreshed)
        report.seconds["refresh"] = refreshed.seconds
        frontier = loaded_frontier(wconn, lake, dataset, refreshed.frontier)
        if frontier is None:
            report.status = "not_loaded"
            report.notes.append(f"raw.{dataset.warehouse_table} holds no slice yet: nothing to compare")
            return report
        flavour = _flavour(erp, wconn)
    report.flavour, report.frontier = flavour, frontier
    cutoff = cutoff_of(frontier)
    report.cutoff = cutoff.isoformat()
    cutoff_us = to_us(cutoff)

    t0 = time.monotonic()
    result = compare(erp, warehouse, dataset, options, flavour, progress=say)
    report.seconds["diff"] = round(time.monotonic() - t0, 3)
    report.stats["diff"] = asdict(result.stats)
    report.null_key_rows = result.null_keys
    report.source_rows = result.stats.source_rows + result.null_keys
    report.warehouse_rows = result.stats.target_rows
    if result.null_keys:
        report.notes.append(f"{result.null_keys} source row(s) with a NULL {dataset.key}: counted in the source "
                            "rows, never landed (quarantined when extracted); fix them at the source")
    issues = classify(result.differences, cutoff_us)
    candidates = {i.key for i in issues if i.category in ("missing", "stale")}
    if candidates:
        q = quarantined_versions(lake, dataset, candidates, options.timezone)
        if q:
            issues = classify(result.differences, cutoff_us, q)
    report.found, report.samples = _count(issues, result.null_keys)
    report.left, report.left_samples = _count([i for i in issues if i.category in PROBLEMS], result.null_keys)
    for i in issues:
        if i.note and i.category in PROBLEMS and not i.healable:
            report.notes.append(f"{i.category} key {i.key}: {i.note}")
    report.notes = report.notes[:SAMPLE]
    healable = [i for i in issues if i.healable and i.category in ("missing", "stale", "extra")]
    if not report.problems:
        report.seconds["total"] = round(time.monotonic() - began, 3)
        return report
    report.status = "differences"
    if options.heal and healable:
        from tally.reconcile.full.heal import heal

        t0 = time.monotonic()
        fetch = [i.key for i in healable if i.category in ("missing", "stale")]
        tomb = [i.key for i in healable if i.category == "extra"]
        say(f"healing {len(fetch)} key(s) and {len(tomb)} tombstone(s) into ds={frontier}")
        done = heal(erp, lake, warehouse, dataset, frontier, cutoff, fetch, tomb,
                    timezone=options.timezone, batch_size=options.batch_size)
        report.heal = done.to_dict()
        report.seconds["heal"] = round(time.monotonic() - t0, 3)
        # compare again: what is left is what the heal could not fix
        t0 = time.monotonic()
        with psycopg.connect(warehouse.conninfo(), autocommit=True) as wconn:
            current.refresh(wconn, dataset)
        again = compare(erp, warehouse, dataset, options, flavour)
        after = [i for i in classify(again.differences, cutoff_us, quarantined_versions(
            lake, dataset, set(again.differences), options.timezone)) if i.category in PROBLEMS]
        report.seconds["verify"] = round(time.monotonic() - t0, 3)
        report.left, report.left_samples = _count(after, again.null_keys)
        for category in ("missing", "extra", "stale"):
            report.healed[category] = max(0, report.found.get(category, 0) - report.left.get(category, 0))
        report.status = "healed" if not report.problems_left else "differences"
    report.seconds["total"] = round(time.monotonic() - began, 3)
    return report


# -- the DAG's tasks (through tally.airflow.tasks) ---------------------------------------------------
def table(res, dataset_id: str, heal: bool = True) -> dict:
    """Reconcile one ERP table (a DAG task): the report as a dict."""
    if res.erp is None:
        raise ValueError("no ERP connection configured")
    return reconcile_table(res.erp, res.lake, res.warehouse, catalog.get(dataset_id), Options(heal=heal)).to_dict()


def gate_results(reports: list[dict]) -> list:
    """One ``GateResult`` per table: failed when the comparison found anything to alert on."""
    from tally.quality.result import GateResult, sample_item

    out = []
    for r in reports:
        failures = []
        key = catalog.get(r["dataset"]).key
        for category in PROBLEMS:
            n = r["found"].get(category, 0)
            if not n:
                continue
            left = r["left"].get(category, 0)
            healed = r["healed"].get(category, 0)
            failures.append({
                "expectation": f"no_{category}_keys", "column": catalog.get(r["dataset"]).key, "observed": n,
                "expected": 0, "key": [key],
                "sample": [sample_item({key: k}, {}, {}) for k in r["samples"].get(category, [])],
                "note": f"{healed} healed, {left} left" + (f" (e.g. {r['left_samples'].get(category)})" if left else ""),
            })
        out.append(GateResult(
            suite=f"reconcile.{r['dataset']}", hop="reconcile", dataset=r["dataset"], success=not failures,
            evaluated=len(PROBLEMS), failed=len(failures), failures=failures,
            run_at=datetime.now(UTC).isoformat(),
            target=f"source vs raw.{catalog.get(r['dataset']).warehouse_table} latest versions, cutoff {r['cutoff']}",
            parameters={"found": r["found"], "healed": r["healed"], "left": r["left"]}))
    return out


def summary_line(reports: list[dict]) -> str:
    parts = []
    for r in reports:
        found = ", ".join(f"{r['found'][c]} {c}" for c in PROBLEMS if r["found"].get(c))
        if found:
            left = sum(r["left"].get(c, 0) for c in PROBLEMS)
            parts.append(f"{r['dataset']}: {found} ({left} left)")
    return "; ".join(parts) or "source and warehouse agree"


def check(res, ds: str, reports: list[dict], *, dag_id: str = "tally_reconcile", task_id: str = "check",
          alert_config=None) -> dict:
    """Record every table's result in ``ops.validation_results``; raise one alert (per DAG, ds and
    this task) with the counts when anything was found; fail if anything is left unhealed."""
    import psycopg

    from tally.core.errors import DataProblem
    from tally.ledger import validation_log

    results = gate_results(reports)
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        for r in results:
            validation_log.store(conn, ds, r, res.run_id)
    failed = [r for r in results if not r.success]
    outcome = None
    if failed:
        outcome = raise_reconcile_alert(res, ds, reports, failed, dag_id=dag_id, task_id=task_id,
                                        config=alert_config)
    left = sum(sum(r["left"].get(c, 0) for c in PROBLEMS) for r in reports)
    if left:
        raise DataProblem(f"full reconciliation: {summary_line(reports)}", failed)
    return {"summary": summary_line(reports), "alert": outcome.describe() if outcome else None,
            "tables": {r["dataset"]: r["status"] for r in reports}}


def raise_reconcile_alert(res, ds: str, reports: list[dict], failed: list, *, dag_id: str, task_id: str,
                          config=None):
    from tally.alerts.config import from_env
    from tally.alerts.dispatch import raise_alert
    from tally.alerts.model import fill, gate_alert

    config = config or from_env()
    alert = gate_alert(dag_id, ds, failed, task_id=task_id, run_id=res.run_id, data_docs_url=config.data_docs_url,
                       runbook_url=config.runbook_url)
    found = sum(r["found"].get(c, 0) for r in reports for c in PROBLEMS)
    left = sum(r["left"].get(c, 0) for r in reports for c in PROBLEMS)
    alert.title = (f"Full reconciliation: {found} key(s) differed between the ERP and the warehouse, "
                   f"{found - left} healed, {left} left — {dag_id} ds={ds}")
    alert.summary = summary_line(reports)
    if config.runbook_url:
        alert.links["runbook"] = f"{fill(config.runbook_url, alert).split('#', 1)[0]}#full-reconciliation-found-differences"
    tables = " ".join(f"--table {r['dataset']}" for r in reports if r["found"])
    alert.commands = [f"tally reconcile --full --no-heal {tables}".strip(), f"tally reconcile --ds {ds}"]
    return raise_alert(alert, config, res.warehouse.conninfo())
