"""Airflow Connections → Tally's resources and alert configuration."""

from __future__ import annotations

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from tally.core.config import PostgresConn, SalesforceConn
from tally.core.resources import Resources
from tally.lake import Lake, S3Options

WAREHOUSE_CONN = "tally_warehouse"
ERP_CONN = "tally_erp"
SALESFORCE_CONN = "tally_salesforce"
LAKE_CONN = "tally_lake"
KAFKA_CONN = "tally_kafka"


def postgres(conn_id: str) -> PostgresConn:
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
        from tally.sources.erp.dialect import MySQLConn

        return MySQLConn(c.host or "127.0.0.1", int(c.port or 3306), c.login or "", c.password or "", c.schema or "")
    return postgres(conn_id)


def resources(run_id: str | None = None, need: tuple[str, ...] = ()) -> Resources:
    """Build core resources from Airflow Connections; ``need`` names optional sources."""
    return Resources(
        lake=_lake(LAKE_CONN),
        warehouse=postgres(WAREHOUSE_CONN),
        erp=_erp(ERP_CONN) if "erp" in need else None,
        salesforce=_salesforce(SALESFORCE_CONN) if "salesforce" in need else None,
        run_id=run_id,
    )


# -- alerts for on-call (tally.alerts) ------------------------------------------------------------
# Each Connection is optional; a channel without one falls back to its TALLY_ALERT_* variables.
ALERT_SLACK_CONN = "tally_alert_slack"  # host = incoming-webhook URL; extra: mention
ALERT_WEBHOOK_CONN = "tally_alert_webhook"  # host = URL; extra: headers {name: value}
ALERT_SMTP_CONN = "tally_alert_smtp"  # host, port, login, password; extra: from, to, starttls, ssl, ca_bundle


def _optional_connection(conn_id: str):
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
