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


def _erp(conn_id: str):
    """The ERP database: Postgres, or MySQL/MariaDB when the connection type says so."""
    c = BaseHook.get_connection(conn_id)
    if (c.conn_type or "").lower() in ("mysql", "mariadb"):
        from tally.sources.erp_dialect import MySQLConn

        return MySQLConn(c.host or "127.0.0.1", int(c.port or 3306), c.login or "", c.password or "", c.schema or "")
    return _postgres(conn_id)


def resources(run_id: str | None = None, need: tuple[str, ...] = ()) -> Resources:
    """Build core resources from Airflow Connections; ``need`` names optional sources."""
    return Resources(
        lake=_lake(LAKE_CONN),
        warehouse=_postgres(WAREHOUSE_CONN),
        erp=_erp(ERP_CONN) if "erp" in need else None,
        salesforce=_salesforce(SALESFORCE_CONN) if "salesforce" in need else None,
        run_id=run_id,
    )


def run_stage(stage: str, run_id: str | None, *args: Any, need: tuple[str, ...] = ()) -> Any:
    """``tally.pipeline.<stage>(resources, *args)`` with resources from the Connections, data
    problems turned into ``AirflowFailException``: the whole body of a DAG task."""
    from tally import pipeline

    return run(getattr(pipeline, stage), resources(run_id, need=need), *args)


def drain_events(run_id: str | None, topic: str, group_id: str, batch_size: int = 20_000) -> dict:
    """Land what the topic holds now into the lake and the ledger (the daily DAG, before the
    engagement job); without a ``tally_kafka`` Connection or the topic there is nothing to do."""
    import psycopg
    from airflow.sdk.exceptions import AirflowNotFoundException

    from tally.events.landing import land_events, record_ledger
    from tally.events.probe import highwaters

    try:
        bootstrap = kafka_bootstrap()
    except AirflowNotFoundException:
        return {"topic": topic, "skipped": "no tally_kafka connection"}
    if not highwaters(bootstrap, topic):
        return {"topic": topic, "skipped": "topic does not exist"}
    res = resources(run_id)
    report = land_events(res.lake, bootstrap, topic, group_id=group_id, batch_size=batch_size)
    with psycopg.connect(res.warehouse.conninfo(), autocommit=True) as conn:
        record_ledger(conn, res.lake, report)
    return {k: report[k] for k in ("topic", "messages", "landed", "quarantined")}


def run_reconcile(step: str, run_id: str | None, *args: Any, **kwargs: Any) -> Any:
    """``tally.reconcile_full.<step>(resources, *args)`` for the tally_reconcile DAG (``table``
    or ``check``; ``check`` alerts through the ``tally_alert_*`` Connections)."""
    from tally import reconcile_full

    if step == "check":
        kwargs.setdefault("alert_config", alert_config())
    return run(getattr(reconcile_full, step), resources(run_id, need=("erp",)), *args, **kwargs)


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a pipeline stage; data problems fail the task at once (no retries)."""
    try:
        return fn(*args, **kwargs)
    except DataProblem as exc:
        raise AirflowFailException(str(exc)) from exc


# -- alerts for on-call (tally.alerts) ------------------------------------------------------------
# Each Connection is optional; a channel without one falls back to its TALLY_ALERT_* variables.
ALERT_SLACK_CONN = "tally_alert_slack"  # host = incoming-webhook URL; extra: mention
ALERT_WEBHOOK_CONN = "tally_alert_webhook"  # host = URL; extra: headers {name: value}
ALERT_SMTP_CONN = "tally_alert_smtp"  # host, port, login, password; extra: from, to, starttls, ssl, ca_bundle


def _optional_connection(conn_id: str):
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _connection_url(c) -> str:
    """The URL a Connection holds: ``host`` when it is a whole URL (the JSON form), else rebuilt
    from an ``AIRFLOW_CONN_*`` URI's parts (scheme from conn_type, path from ``schema``)."""
    host = c.host or ""
    if host.startswith(("http://", "https://")):
        return host
    scheme = c.conn_type if c.conn_type in ("http", "https") else "https"
    port = f":{c.port}" if c.port else ""
    path = f"/{c.schema.lstrip('/')}" if c.schema else ""
    return f"{scheme}://{host}{port}{path}"


def alert_config():
    """``tally.alerts.config.AlertConfig`` from the ``tally_alert_*`` Connections and the environment."""
    from dataclasses import replace

    from tally.alerts.config import DEFAULT_TIMEOUT, SlackConfig, SmtpConfig, WebhookConfig, as_bool, from_env
    from tally.alerts.config import split_addresses as addresses

    config = from_env()
    if c := _optional_connection(ALERT_SLACK_CONN):
        extra = c.extra_dejson
        config = replace(config, slack=SlackConfig(_connection_url(c), mention=str(extra.get("mention", "")),
                                                   timeout=float(extra.get("timeout", DEFAULT_TIMEOUT))))
    if c := _optional_connection(ALERT_WEBHOOK_CONN):
        extra = c.extra_dejson
        config = replace(config, webhook=WebhookConfig(
            _connection_url(c), {str(k): str(v) for k, v in (extra.get("headers") or {}).items()},
            timeout=float(extra.get("timeout", DEFAULT_TIMEOUT))))
    if c := _optional_connection(ALERT_SMTP_CONN):
        extra = c.extra_dejson
        ssl_ = as_bool(extra.get("ssl"), False)
        config = replace(config, smtp=SmtpConfig(
            host=c.host or "localhost", port=int(c.port or (465 if ssl_ else 587)),
            sender=str(extra.get("from") or c.login or "tally@localhost"), to=addresses(extra.get("to")),
            login=c.login or "", password=c.password or "", starttls=as_bool(extra.get("starttls"), not ssl_),
            ssl=ssl_, ca_bundle=extra.get("ca_bundle"), timeout=float(extra.get("timeout", DEFAULT_TIMEOUT))))
    return config


def _context_ds(context: Any) -> str:
    from datetime import UTC, datetime

    for key in ("data_interval_start", "logical_date"):  # the DAGs' ds is the interval's start date
        value = context.get(key)
        if value is not None:
            return value.strftime("%Y-%m-%d")
    if context.get("ds"):
        return str(context["ds"])
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return (run_after or datetime.now(UTC)).strftime("%Y-%m-%d")


def raise_failure_alert(context: Any, config=None, warehouse_conninfo: str | None = None):
    """The work behind ``tally.alerts.callback.alert_on_failure``: build the alert from a failed
    task's context (a gate alert when ``context["exception"]`` was raised from a ``DataProblem``
    carrying gate results, else a task alert with the error) and raise it once per
    (dag, ds, gate or task); the raw gate raises one per failed dataset
    (``tally.alerts.model.failure_alerts``). Returns the ``tally.alerts.dispatch.Outcome``s."""
    from tally.alerts.dispatch import raise_alert
    from tally.alerts.model import failure_alerts

    config = config or alert_config()
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or "unknown"
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None) or "unknown"
    try:
        log_url = getattr(ti, "log_url", None)
    except Exception:  # the property reads Airflow's config
        log_url = None
    secrets = list(config.secrets())
    if warehouse_conninfo is None:
        try:
            warehouse = _postgres(WAREHOUSE_CONN)
            warehouse_conninfo = warehouse.conninfo()
            secrets.append(warehouse.password)
        except Exception:  # no warehouse Connection: raise_alert sends without recording
            warehouse_conninfo = None
    alerts = failure_alerts(
        dag_id, _context_ds(context), task_id, context.get("exception"),
        run_id=context.get("run_id") or getattr(ti, "run_id", None), try_number=getattr(ti, "try_number", None),
        log_url=log_url, data_docs_url=config.data_docs_url, runbook_url=config.runbook_url,
        secrets=[s for s in secrets if s],
    )
    return [raise_alert(alert, config, warehouse_conninfo) for alert in alerts]
