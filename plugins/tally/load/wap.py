"""Write–audit–publish: a ds reaches the tables analysts and dbt read only after its gate passed,
and all its tables switch together.

1. **Write** (``tally.load.stage.load``): every raw dataset and curated output of the ds is COPYed
   into its *staging* table, ``wap_<schema>.<table>`` (``wap_raw.sf_opportunity`` stages
   ``raw.sf_opportunity``), shaped like the published table by the same ``ensure_table``; the
   slice is keyed by ``_ds``. ``ops.staged`` gets the ds's row (which tables, which run).
   Nothing published is touched, so a load killed between two tables leaves no mixed ds.
2. **Audit** (``tally.gates.warehouse``): the staging slices are counted and checksummed against
   the manifests; the verdict and the measured row counts are kept on ``ops.staged``.
3. **Publish** (:func:`publish`): in ONE transaction, under an advisory lock, each table's
   :class:`PublishStrategy` moves the staged slice into the published table and clears it from
   staging; ``ops.publications`` records the publication and ``ops.staged`` forgets the ds. The
   rows moved must equal the rows the gate measured, or nothing is published. A failed gate,
   a failed publish or a load that did not finish leaves the published state as it was.
   Re-running a publish after it succeeded does nothing (the ds has nothing staged).

The ledger's ``warehouse`` hop is the slice the gate measured (staged); :func:`publish`
re-stamps it (same rows, count and checksum; ``details.published_at``) when it publishes, so its
``recorded_at`` is the publication time dbt's source freshness reads. ``tally reconcile --ds``
says "staged, not published" for a ds whose gate failed or whose publish has not run (exit 7).

Strategies: every table publishes with :data:`REPLACE_DS` today (delete the published ds slice,
insert the staged one: the per-ds snapshots). The merge-based, incremental tables of issue 17
plug in as another :class:`PublishStrategy` (``merge_on_key``: upsert the staged changes into a
current-state table by key where the version is newer, delete tombstoned keys, close/open SCD2
rows in a history table) chosen per table in :func:`targets`; the staging, gate and
one-transaction publish around it stay the same.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from tally import catalog, contract
from tally.core.errors import DataProblem
from tally.core.pgutil import ensure_ddl
from tally.core.resources import Resources, check_ds

STAGING_PREFIX = "wap_"
# One publisher at a time (and a publish never interleaves with another of any ds).
PUBLISH_LOCK = zlib.crc32(b"tally.load.wap.publish")

OPS_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.staged (
    ds           date        PRIMARY KEY,
    run_id       text,
    tables       jsonb       NOT NULL,  -- published table -> rows COPY staged
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    gate_passed  boolean,               -- NULL: not gated yet
    gated_rows   jsonb,                 -- published table -> rows the gate measured
    gated_at     timestamptz
);
CREATE TABLE IF NOT EXISTS ops.publications (
    id           bigserial   PRIMARY KEY,
    ds           date        NOT NULL,
    run_id       text,
    tables       text[]      NOT NULL,
    rows         bigint      NOT NULL,
    details      jsonb       NOT NULL DEFAULT '{}',  -- published table -> rows
    published_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS publications_ds ON ops.publications (ds, published_at DESC);
"""


def ensure(conn: psycopg.Connection) -> None:
    ensure_ddl(conn, "ops.staged+publications", OPS_DDL)


def staging_schema(schema: str) -> str:
    """The staging schema of a published schema: ``raw`` → ``wap_raw``."""
    return STAGING_PREFIX + schema


class PublishStrategy(Protocol):
    """How one table's staged ds slice becomes published, inside the publish transaction."""

    name: str

    def publish(self, conn: psycopg.Connection, target: Target, ds: str) -> int:
        """Move the staged slice of ``ds`` into ``target``'s published table and clear it from
        staging; the rows written."""
        ...


@dataclass(frozen=True)
class ReplaceDs:
    """Delete the published ds slice, insert the staged one (``_loaded_at``: the publication)."""

    name: str = "replace_ds"

    def publish(self, conn: psycopg.Connection, target: Target, ds: str) -> int:
        cols = [c for c in staged_columns(conn, target) if c != "_loaded_at"]
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        published, staged = sql.Identifier(target.schema, target.table), target.staging_identifier()
        conn.execute(sql.SQL("DELETE FROM {} WHERE _ds = %s").format(published), (ds,))
        rows = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE _ds = %s").format(
            published, names, names, staged), (ds,)).rowcount
        conn.execute(sql.SQL("DELETE FROM {} WHERE _ds = %s").format(staged), (ds,))
        return rows


REPLACE_DS = ReplaceDs()


@dataclass(frozen=True)
class Target:
    """One warehouse table of a ds: the ledger's dataset, its lake partition, its published and
    staging tables, its key column (snake case) and how it publishes."""

    dataset: str
    lake_path: str
    schema: str
    table: str
    key: str
    strategy: PublishStrategy = REPLACE_DS

    @property
    def published(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def staging(self) -> str:
        return f"{staging_schema(self.schema)}.{self.table}"

    def staging_identifier(self) -> sql.Identifier:
        return sql.Identifier(staging_schema(self.schema), self.table)


def targets() -> list[Target]:
    """Every warehouse table tally_daily loads, raw datasets first (the order of load and publish)."""
    out = [Target(d.dataset_id, d.lake_path, "raw", d.warehouse_table, catalog.snake_case(d.key))
           for d in catalog.all_raw()]
    out += [Target(name, f"curated/{name}", "curated", name, catalog.CURATED_KEYS[name]) for name in contract.CURATED]
    return out


def target_of(dataset_id: str) -> Target:
    """The warehouse table of a ledger dataset (``erp.payments`` → ``raw.erp_payments``)."""
    for target in targets():
        if target.dataset == dataset_id:
            return target
    raise KeyError(f"no warehouse table for dataset {dataset_id!r}")


def staged_columns(conn: psycopg.Connection, target: Target) -> list[str]:
    rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                        " AND table_name = %s ORDER BY ordinal_position",
                        (staging_schema(target.schema), target.table)).fetchall()
    if not rows:
        raise DataProblem(f"{target.staging} does not exist: load_warehouse has not staged it")
    return [r[0] for r in rows]


# -- the ds's staging record ---------------------------------------------------------------------------
def unstage(conn: psycopg.Connection, ds: str) -> None:
    """Forget that ds is staged (a load starts: until it finishes, there is nothing to publish)."""
    ensure(conn)
    conn.execute("DELETE FROM ops.staged WHERE ds = %s", (ds,))


def mark_staged(conn: psycopg.Connection, ds: str, run_id: str | None, rows: Mapping[str, int]) -> None:
    """Every table of ds is staged (``rows``: published table → rows COPYed); not gated yet."""
    ensure(conn)
    conn.execute(
        "INSERT INTO ops.staged (ds, run_id, tables) VALUES (%s, %s, %s) ON CONFLICT (ds) DO UPDATE"
        " SET run_id = EXCLUDED.run_id, tables = EXCLUDED.tables, loaded_at = now(), gate_passed = NULL,"
        " gated_rows = NULL, gated_at = NULL", (ds, run_id, json.dumps(dict(rows))))


def staged(conn: psycopg.Connection, ds: str) -> dict[str, Any] | None:
    """ds's staging record (``run_id``, ``tables``, ``gate_passed``, ``gated_rows``…), or None."""
    ensure(conn)
    row = conn.execute("SELECT run_id, tables, loaded_at, gate_passed, gated_rows, gated_at FROM ops.staged"
                       " WHERE ds = %s", (ds,)).fetchone()
    if row is None:
        return None
    return dict(zip(("run_id", "tables", "loaded_at", "gate_passed", "gated_rows", "gated_at"), row, strict=True))


def mark_gated(conn: psycopg.Connection, ds: str, passed: bool, rows: Mapping[str, int]) -> None:
    """The gate's verdict on ds's staged slices and the rows it measured per published table."""
    conn.execute("UPDATE ops.staged SET gate_passed = %s, gated_rows = %s, gated_at = now() WHERE ds = %s",
                 (passed, json.dumps(dict(rows)), ds))


def last_publication(conn: psycopg.Connection, ds: str) -> dict[str, Any] | None:
    ensure(conn)
    row = conn.execute("SELECT run_id, tables, rows, details, published_at FROM ops.publications WHERE ds = %s"
                       " ORDER BY published_at DESC, id DESC LIMIT 1", (ds,)).fetchone()
    if row is None:
        return None
    return dict(zip(("run_id", "tables", "rows", "details", "published_at"), row, strict=True))


def state(conn: psycopg.Connection, ds: str) -> dict[str, Any]:
    """What ``tally reconcile`` needs: ``staged`` (a load finished and is not published yet),
    ``gate_passed`` (None: not gated), ``published_at`` / ``published_run`` (the last publication)."""
    s, p = staged(conn, ds), last_publication(conn, ds)
    return {"staged": s is not None, "gate_passed": s["gate_passed"] if s else None,
            "published_at": p["published_at"].isoformat() if p else None, "published_run": p["run_id"] if p else None}


# -- publish -------------------------------------------------------------------------------------------
def publish(res: Resources, ds: str) -> dict[str, Any]:
    """Publish ds's staged, gated slices: every table in one transaction (see the module doc).
    Nothing staged and ds already published: nothing to do (a re-run). ``DataProblem`` when the
    gate has not passed the staged slices, or a table's rows differ from what the gate measured."""
    from tally import ledger
    from tally.ledger import Entry

    check_ds(ds)
    by_name = {t.published: t for t in targets()}
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
            row = conn.execute("SELECT run_id, tables, gate_passed, gated_rows FROM ops.staged WHERE ds = %s"
                               " FOR UPDATE", (ds,)).fetchone()
            if row is None:
                last = last_publication(conn, ds)
                if last is None:
                    raise DataProblem(f"ds={ds}: nothing staged and never published: run load_warehouse and "
                                      "gate_warehouse first")
                return {"ds": ds, "published": False, "already_published_at": last["published_at"].isoformat(),
                        "by_run": last["run_id"], "tables": last["tables"], "rows": last["rows"]}
            _loaded_by, tables, passed, gated = row
            if passed is not True:
                why = "the gate failed" if passed is False else "the gate has not run"
                raise DataProblem(f"ds={ds} is staged but not published: {why}. Published tables are unchanged; "
                                  "fix the cause, then clear load_warehouse and its downstream")
            unknown = sorted(set(tables) - set(by_name))
            if unknown:
                raise DataProblem(f"ds={ds}: staged tables Tally does not publish: {unknown}")
            written: dict[str, int] = {}
            for name in [t for t in by_name if t in tables]:  # targets' order
                target = by_name[name]
                written[name] = target.strategy.publish(conn, target, ds)
                if written[name] != gated.get(name):
                    raise DataProblem(f"{name} ds={ds}: publishing moved {written[name]} rows, the gate measured "
                                      f"{gated.get(name)}: nothing published")
            published_at = conn.execute(
                "INSERT INTO ops.publications (ds, run_id, tables, rows, details) VALUES (%s, %s, %s, %s, %s)"
                " RETURNING published_at", (ds, res.run_id, list(written), sum(written.values()),
                                            json.dumps(written))).fetchone()[0]
            flow = ledger.flow(conn, ds)
            for name, target in by_name.items():
                e = flow.get(target.dataset, {}).get("warehouse")
                if name in written and e is not None:
                    ledger.record(conn, Entry(ds, target.dataset, "warehouse", e.row_count, e.key_checksum,
                                              {**e.details, "table": name, "published_at": published_at.isoformat(),
                                               "published_by": res.run_id}))
            conn.execute("DELETE FROM ops.staged WHERE ds = %s", (ds,))
    return {"ds": ds, "published": True, "published_at": published_at.isoformat(), "tables": list(written),
            "rows": sum(written.values())}


def publish_table(conn: psycopg.Connection, target: Target, ds: str, audited_rows: int, run_id: str | None) -> int:
    """Publish one table's staged slice of ds that its caller has audited (``audited_rows`` measured
    in the staging table), in the caller's transaction, under the publish lock; recorded in
    ``ops.publications``. A heal (``tally.reconcile.full.heal``) uses it: its reload is staged,
    checked against the new manifest, and only then replaces the published slice."""
    ensure(conn)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
    written = target.strategy.publish(conn, target, ds)
    if written != audited_rows:
        raise DataProblem(f"{target.published} ds={ds}: publishing moved {written} rows, the audit measured "
                          f"{audited_rows}: nothing published")
    conn.execute("INSERT INTO ops.publications (ds, run_id, tables, rows, details) VALUES (%s, %s, %s, %s, %s)",
                 (ds, run_id, [target.published], written, json.dumps({target.published: written})))
    return written
