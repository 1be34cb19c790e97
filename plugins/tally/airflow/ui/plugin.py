"""The "Tally ledger" Airflow plugin: the ledger view (``app.py``) inside the Airflow UI.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), since the plugins folder's
``.airflowignore`` keeps Airflow from importing the ``tally`` packages as plugin files. It adds:

- a FastAPI app mounted by the API server at ``/tally`` (``/tally/ledger``), reading the ``ops``
  schema through the ``tally_warehouse`` Connection; a request needs an Airflow login allowed to
  read tally_daily's runs (the UI's session cookie is enough);
- a "Tally ledger" tab on every DAG run's page (``destination: dag_run``) and an entry in the
  Browse menu (``destination: nav``), showing the newest ds.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/tally"


def _resolve_ds(dag_id: str, run_id: str) -> str | None:
    """The ds of a DAG run (its logical date; a run without one: when it was due to run)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(DagRun.logical_date, DagRun.run_after).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
        ).first()
    if row is None:
        return None
    when: datetime | None = row[0] or row[1]
    return when.date().isoformat() if when else None


def _warehouse():
    from tally.airflow.connections import WAREHOUSE_CONN, postgres

    return postgres(WAREHOUSE_CONN)


def create_app():
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends

    from tally.airflow.ui.app import DAG_ID
    from tally.airflow.ui.app import create_app as build

    access = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
    return build(_warehouse, resolve_ds=_resolve_ds, dependencies=[access])


class TallyPlugin(AirflowPlugin):
    name = "tally"

    @classmethod
    def on_load(cls, *args, **kwargs) -> None:
        """Work around the installed Airflow's known bugs (``tally.airflow.compat``)."""
        from tally.airflow import compat

        compat.install()

    @cached_property
    def fastapi_apps(self) -> list[dict]:  # type: ignore[override]  # built on first use: the API server
        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Tally ledger"}]

    external_views = [
        {"name": "Tally ledger", "href": "tally/ledger?dag_id={DAG_ID}&run_id={RUN_ID}",
         "destination": "dag_run", "url_route": "tally-ledger-run"},
        {"name": "Tally ledger", "href": "tally/ledger", "destination": "nav", "category": "browse",
         "url_route": "tally-ledger"},
    ]
