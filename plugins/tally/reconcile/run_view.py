"""What the ledger view (the Airflow UI's "Tally ledger", ``tally.airflow.ui``) shows for one ds.

Pure queries over the ``ops`` schema and the Data Docs catalog, without Airflow:

- :func:`run_view`: the flow source → raw → curated → warehouse → mart per dataset with its first
  divergent hop (``tally.ledger.first_divergence``), the gate results
  (``tally.ledger.validation_log.latest``) with the Data Docs page of each suite's validation of
  the ds where the site has one (and its warnings), the open alerts of the ds
  (``tally.alerts.store``), and the warehouse's write–audit–publish state of the ds
  (``tally.load.wap.state``: published when, or staged and waiting, and why).
- :func:`history`: rows per hop, summed over the datasets, for every calendar day of the last
  ``days`` ds up to a ds (a day without entries is a gap: a run that did not happen is a dip too),
  with the datasets that diverge on that day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg

from tally import ledger
from tally.alerts import store as alert_store
from tally.ledger import HOPS, Entry, validation_log
from tally.load import wap

DAG_ID = "tally_daily"


@dataclass(frozen=True)
class Divergence:
    from_hop: str
    to_hop: str
    why: str


@dataclass(frozen=True)
class DatasetFlow:
    dataset: str
    hops: dict[str, Entry]
    divergence: Divergence | None
    # where the source's rows went (source count = landed + quarantined; tombstones beside);
    # None for a dataset not landed from a source (curated outputs)
    accounting: ledger.Accounting | None = None


@dataclass(frozen=True)
class Gate:
    hop: str
    dataset: str
    success: bool
    evaluated: int
    failed: int
    summary: str
    suites: list[str]
    # suite → its Data Docs page (relative to the site's root) for this ds, where the site has one
    pages: dict[str, str] = field(default_factory=dict)
    warnings: int = 0  # checks of warn severity that did not hold (the gate still passed)
    warning_summary: str = ""


@dataclass(frozen=True)
class Day:
    ds: str
    rows: dict[str, int]  # hop → rows summed over the datasets (hops without entries left out)
    divergent: tuple[str, ...] = ()  # datasets whose flow diverges on this ds


@dataclass(frozen=True)
class RunView:
    ds: str
    flows: list[DatasetFlow]
    gates: list[Gate]
    alerts: list[dict[str, Any]]
    # tally.load.wap.state: staged, gate_passed, published_at, published_run
    publication: dict[str, Any] = field(default_factory=dict)

    @property
    def divergent(self) -> list[DatasetFlow]:
        return [f for f in self.flows if f.divergence]


def flows(table: dict[str, dict[str, Entry]]) -> list[DatasetFlow]:
    """One :class:`DatasetFlow` per dataset of ``ledger.flow``'s table, by dataset name."""
    out = []
    for dataset in sorted(table):
        div = ledger.first_divergence(table[dataset])
        out.append(DatasetFlow(dataset, dict(table[dataset]), Divergence(*div) if div else None,
                               ledger.accounting(table[dataset])))
    return out


def docs_pages(catalog_entries: list[dict], ds: str) -> dict[str, str]:
    """suite → the newest Data Docs page of its validation of ``ds``, from the site's catalog
    entries (``tally.quality.docs.latest()``: newest first; ``run_name`` is the ds)."""
    pages: dict[str, str] = {}
    for e in catalog_entries:
        suite, page = e.get("expectation_suite_name"), e.get("filepath")
        if e.get("run_name") == ds and suite and page and suite not in pages:
            pages[suite] = page
    return pages


def gates(results: list[dict], pages: dict[str, str]) -> list[Gate]:
    """``validation_log.latest`` rows as :class:`Gate`, each with its suites' pages."""
    out = []
    for r in results:
        suites = list(r.get("suites") or [r["suite"]])
        out.append(Gate(r["hop"], r["dataset"], bool(r["success"]), int(r["evaluated"] or 0),
                        int(r["failed"] or 0), str(r.get("summary") or ""), suites,
                        {s: pages[s] for s in suites if s in pages}, int(r.get("warnings") or 0),
                        str(r.get("warning_summary") or "")))
    return out


def run_view(conn: psycopg.Connection, ds: str, catalog_entries: list[dict] | None = None,
             dag_id: str = DAG_ID) -> RunView:
    """Everything the view shows for ``ds`` (a ``YYYY-MM-DD`` already checked by the caller)."""
    pages = docs_pages(catalog_entries or [], ds)
    return RunView(
        ds=ds,
        flows=flows(ledger.flow(conn, ds)),
        gates=gates(validation_log.latest(conn, ds), pages),
        alerts=alert_store.list_alerts(conn, ds=ds, dag_id=dag_id, limit=100),
        publication=wap.state(conn, ds),
    )


def latest_ds(conn: psycopg.Connection) -> str | None:
    """The newest ds the ledger has entries for (``None`` when it is empty)."""
    ledger.ensure(conn)
    row = conn.execute("SELECT max(ds)::text FROM ops.ledger").fetchone()
    return row[0] if row else None


def history(conn: psycopg.Connection, until: str, days: int = 14, dataset: str | None = None) -> list[Day]:
    """One :class:`Day` per calendar day from ``until - days + 1`` to ``until``, oldest first:
    rows per hop summed over the datasets (or of ``dataset`` alone)."""
    days = max(1, int(days))
    end = date.fromisoformat(until)
    start = end - timedelta(days=days - 1)
    ledger.ensure(conn)
    query = ("SELECT ds::text, dataset, hop, row_count, key_checksum, details FROM ops.ledger"
             " WHERE ds BETWEEN %s AND %s")
    params: list[Any] = [start, end]
    if dataset:
        query += " AND dataset = %s"
        params.append(dataset)
    by_day: dict[str, dict[str, dict[str, Entry]]] = {}
    for row in conn.execute(query, params).fetchall():
        e = Entry(*row)
        by_day.setdefault(e.ds, {}).setdefault(e.dataset, {})[e.hop] = e
    out = []
    for i in range(days):
        ds = (start + timedelta(days=i)).isoformat()
        table = by_day.get(ds, {})
        rows = {h: sum(hops[h].row_count for hops in table.values() if h in hops)
                for h in HOPS if any(h in hops for hops in table.values())}
        divergent = tuple(d for d in sorted(table) if ledger.first_divergence(table[d]))
        out.append(Day(ds, rows, divergent))
    return out
