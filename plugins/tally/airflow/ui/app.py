"""The ledger view's FastAPI app, mounted by the Airflow API server at ``/tally`` (``plugin.py``).

- ``GET ledger?ds=YYYY-MM-DD`` (or ``?dag_id=…&run_id=…``, as the DAG run's "Tally ledger" tab
  calls it; neither: the newest ds in the ledger) — the page (``render.page``); ``days`` (1–90,
  default 14) sets the chart's span and ``dataset`` charts one dataset.
- ``GET ledger.json`` — the same data for scripts.
- ``GET data-docs/…`` — the Great Expectations Data Docs site (``tally.quality.docs``), so the
  gates' links open in the browser (the site is self-contained: it needs no internet).

The app knows nothing of Airflow: the warehouse, how a run id becomes a ds and the access check
are handed in (``plugin.py`` takes them from Airflow; tests give their own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from tally.airflow.ui import render
from tally.core.config import PostgresConn
from tally.core.dates import InputError, parse_ds
from tally.reconcile import run_view

DAG_ID = run_view.DAG_ID
MAX_DAYS = 90


class _Problem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    warehouse: Callable[[], PostgresConn],
    *,
    resolve_ds: Callable[[str, str], str | None] | None = None,
    docs_dir: Path | None = None,
    dependencies: Sequence[Any] = (),
) -> FastAPI:
    """``warehouse``: the ops schema's database, asked per request (a Connection may change);
    ``resolve_ds(dag_id, run_id)``: a DAG run's ds, ``None`` when there is no such run;
    ``docs_dir``: the Data Docs site to serve (``None``: the default site, if it exists)."""
    app = FastAPI(title="Tally ledger", dependencies=list(dependencies), docs_url=None, redoc_url=None,
                  openapi_url=None)

    def gather(ds: str | None, dag_id: str, run_id: str | None, days: int, dataset: str | None) -> dict:
        if ds:
            try:
                ds = parse_ds(ds)
            except InputError as e:
                raise _Problem(400, str(e)) from None
        elif run_id:
            ds = resolve_ds(dag_id, run_id) if resolve_ds else None
            if ds is None:
                raise _Problem(404, f"no run {run_id!r} of {dag_id} (give ?ds=YYYY-MM-DD)")
        if not 1 <= days <= MAX_DAYS:
            raise _Problem(400, f"days must be between 1 and {MAX_DAYS}, got {days}")
        target = warehouse()
        try:
            conn = psycopg.connect(target.conninfo(), autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise _Problem(503, f"cannot reach the warehouse {target.redacted()}: {first}") from None
        with conn:
            ds = ds or run_view.latest_ds(conn)
            if ds is None:
                raise _Problem(404, "the ledger (ops.ledger) is empty: tally_daily has not run yet")
            view = run_view.run_view(conn, ds, _catalog(site), dag_id=DAG_ID)
            history = run_view.history(conn, ds, days, dataset or None)
        return {"view": view, "history": history, "run_id": run_id, "dataset": dataset or None}

    site = docs_dir or _default_docs_dir()

    @app.exception_handler(_Problem)
    async def problem(_request, exc: _Problem) -> PlainTextResponse:
        return PlainTextResponse(str(exc), status_code=exc.status)

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger_page(ds: str | None = None, dag_id: str = DAG_ID, run_id: str | None = None,
                    days: int = Query(14), dataset: str | None = None) -> HTMLResponse:
        got = gather(ds, dag_id, run_id, days, dataset)
        served = site is not None and site.is_dir()
        html = render.page(got["view"], got["history"], dag_id=DAG_ID, run_id=got["run_id"],
                           docs_base="data-docs/" if served else None, dataset=got["dataset"])
        return HTMLResponse(html)

    @app.get("/ledger.json")
    def ledger_json(ds: str | None = None, dag_id: str = DAG_ID, run_id: str | None = None,
                    days: int = Query(14), dataset: str | None = None) -> JSONResponse:
        got = gather(ds, dag_id, run_id, days, dataset)
        view = got["view"]
        body = {
            "ds": view.ds,
            "flows": [{"dataset": f.dataset,
                       "hops": {h: {"rows": e.row_count, "key_checksum": e.key_checksum} for h, e in f.hops.items()},
                       "first_divergence": dataclasses.asdict(f.divergence) if f.divergence else None,
                       "accounting": dataclasses.asdict(f.accounting) if f.accounting else None}
                      for f in view.flows],
            "publication": view.publication,
            "gates": [dataclasses.asdict(g) for g in view.gates],
            "alerts": [{k: a[k] for k in ("id", "gate", "category", "title", "summary", "occurrences")}
                       for a in view.alerts],
            "history": [dataclasses.asdict(d) for d in got["history"]],
        }
        return JSONResponse(body)

    if site is not None:
        app.mount("/data-docs", StaticFiles(directory=site, html=True, check_dir=False), name="data-docs")
    return app


def _default_docs_dir() -> Path | None:
    from tally.quality import docs

    return docs.docs_dir() if docs.enabled() else None


def _catalog(site: Path | None) -> list[dict]:
    if site is None:
        return []
    from tally.quality import docs

    return docs.latest(site)
