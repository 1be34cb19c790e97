"""Thin adapter between Airflow and Tally's core: Connections in, AirflowFailException out.

Only task code imports this module (never DAG top level), and nothing in ``tally`` imports
it, so the core stays free of Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from tally.config import PostgresConn, SalesforceConn
from tally.lake import Lake, S3Options
from tally.pipeline import DataProblem, Resources

T = TypeVar("T")

WAREHOUSE_CONN = "tally_warehouse"
ERP_CONN = "tally_erp"
SALESFORCE_CONN = "tally_salesforce"
LAKE_CONN = "tally_lake"
KAFKA_CONN = "tally_kafka"


def _postgres(conn_id: str) -> PostgresConn:
    c = BaseHook.get_connection(conn_id)
    return PostgresConn(c.host or "127.0.0.1", int(c.port or 5432), c.login or "", c.password or "",
                        c.schema or "postgres")


def _salesforce(conn_id: str) -> SalesforceConn:
    c = BaseHook.get_connection(conn_id)
    extra = c.extra_dejson
    login_url = c.host if (c.host or "").startswith("http") else f"https://{c.host or 'login.salesforce.com'}"
    return SalesforceConn(
        login_url=login_url, username=c.login or "", password=c.password or "",
        security_token=extra.get("security_token", ""), api_version=str(extra.get("api_version", "62.0")),
        ca_bundle=extra.get("ca_bundle"), client_id=extra.get("client_id"), client_secret=extra.get("client_secret"),
    )


def _lake(conn_id: str) -> Lake:
    c = BaseHook.get_connection(conn_id)
    extra = c.extra_dejson
    s3 = S3Options(endpoint_url=extra.get("endpoint_url"), access_key=c.login, secret_key=c.password,
                   region=extra.get("region_name", "us-east-1"))
    return Lake(c.host or "", s3)


def kafka_bootstrap(conn_id: str = KAFKA_CONN) -> str:
    """Kafka bootstrap servers from a Connection: extra ``bootstrap_servers`` if set, else
    ``host`` (a comma-separated list may carry its own ports) with ``port`` (default 9092)."""
    c = BaseHook.get_connection(conn_id)
    explicit = c.extra_dejson.get("bootstrap_servers")
    if explicit:
        return str(explicit)
    hosts = [h.strip() for h in (c.host or "").split(",") if h.strip()]
    if not hosts:
        raise ValueError(f"connection {conn_id} has no host (or extra bootstrap_servers)")
    return ",".join(h if ":" in h else f"{h}:{c.port or 9092}" for h in hosts)


def resources(run_id: str | None = None, need: tuple[str, ...] = ()) -> Resources:
    """Build core resources from Airflow Connections; ``need`` names optional sources."""
    return Resources(
        lake=_lake(LAKE_CONN),
        warehouse=_postgres(WAREHOUSE_CONN),
        erp=_postgres(ERP_CONN) if "erp" in need else None,
        salesforce=_salesforce(SALESFORCE_CONN) if "salesforce" in need else None,
        run_id=run_id,
    )


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a pipeline stage; data problems fail the task at once (no retries)."""
    try:
        return fn(*args, **kwargs)
    except DataProblem as exc:
        raise AirflowFailException(str(exc)) from exc
