"""Channel settings for alerts: plain objects, read from the environment by :func:`from_env`.

Every channel is optional; with none configured an alert is still recorded in ``ops.alerts``.
In Airflow, ``tally.airflow.connections.alert_config`` fills the channels from the Connections
``tally_alert_slack``, ``tally_alert_webhook`` and ``tally_alert_smtp`` instead.

Webhook URLs are secrets (whoever has one can post to the channel): they are never logged or
stored; :func:`redact_url` shows only the scheme and host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_TIMEOUT = 10.0
DEFAULT_RUNBOOK_URL = "docs/runbook.md"


@dataclass(frozen=True)
class SlackConfig:
    """A Slack incoming webhook (or anything that accepts its ``text`` + ``blocks`` JSON)."""

    url: str
    mention: str = ""  # put in front of the text, e.g. "<!subteam^S0123>" or "<!here>"
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"SlackConfig(url={redact_url(self.url)!r})"


@dataclass(frozen=True)
class WebhookConfig:
    """A generic webhook: the alert as JSON, POSTed with ``headers`` (e.g. an Authorization)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return f"WebhookConfig(url={redact_url(self.url)!r}, headers={sorted(self.headers)})"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    sender: str = "tally@localhost"
    to: tuple[str, ...] = ()
    login: str = ""
    password: str = ""
    starttls: bool = True  # upgrade with STARTTLS (verified) before logging in
    ssl: bool = False  # implicit TLS (SMTPS, usually port 465) instead of STARTTLS
    ca_bundle: str | None = None  # CA file to verify the server with; default: the system store
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:
        return (f"SmtpConfig(host={self.host!r}, port={self.port}, sender={self.sender!r}, to={list(self.to)},"
                f" login={'***' if self.login else ''!r}, starttls={self.starttls}, ssl={self.ssl})")


@dataclass(frozen=True)
class AlertConfig:
    slack: SlackConfig | None = None
    webhook: WebhookConfig | None = None
    smtp: SmtpConfig | None = None
    # Links in every alert. Both may hold {ds}, {dag_id}, {suite}, {dataset}, {hop} placeholders.
    data_docs_url: str = ""  # default: file://$TALLY_HOME/data_docs/index.html
    runbook_url: str = DEFAULT_RUNBOOK_URL  # the alert's anchor (#raw-gate-failed, ...) is appended

    def channels(self) -> list[str]:
        return [name for name in ("slack", "webhook", "email") if self.channel(name) is not None]

    def channel(self, name: str) -> SlackConfig | WebhookConfig | SmtpConfig | None:
        return {"slack": self.slack, "webhook": self.webhook, "email": self.smtp}[name]

    def secrets(self) -> list[str]:
        """Values that must never appear in a log, a stored row or a sent message."""
        out: list[str] = []
        if self.slack:
            out += [self.slack.url, _url_path(self.slack.url)]
        if self.webhook:
            out += [self.webhook.url, _url_path(self.webhook.url), *self.webhook.headers.values()]
        if self.smtp:
            out += [self.smtp.password]
        return sorted({s for s in out if s and len(s) >= 4}, key=len, reverse=True)


def default_data_docs_url() -> str:
    from tally.core.paths import tally_home

    return (tally_home() / "data_docs" / "index.html").as_uri()


def from_env(environ: Mapping[str, str] | None = None) -> AlertConfig:
    """Settings from ``TALLY_ALERT_*`` variables (each channel only when its URL/host is set).

    ==============================  ====================================================
    ``TALLY_ALERT_SLACK_URL``       Slack incoming-webhook URL (``TALLY_ALERT_SLACK_MENTION``)
    ``TALLY_ALERT_WEBHOOK_URL``     generic webhook URL (``TALLY_ALERT_WEBHOOK_AUTHORIZATION``
                                    is sent as the ``Authorization`` header)
    ``TALLY_ALERT_SMTP_HOST``       SMTP server; ``_PORT`` (587), ``_USER``, ``_PASSWORD``,
                                    ``_FROM``, ``_TO`` (comma-separated), ``_STARTTLS`` (true),
                                    ``_SSL`` (false), ``_CA_BUNDLE``
    ``TALLY_DATA_DOCS_URL``         Data Docs link (default ``$TALLY_HOME/data_docs/index.html``)
    ``TALLY_RUNBOOK_URL``           runbook link (default ``docs/runbook.md``)
    ==============================  ====================================================
    """
    env = os.environ if environ is None else environ
    slack = webhook = smtp = None
    if env.get("TALLY_ALERT_SLACK_URL"):
        slack = SlackConfig(env["TALLY_ALERT_SLACK_URL"], mention=env.get("TALLY_ALERT_SLACK_MENTION", ""))
    if env.get("TALLY_ALERT_WEBHOOK_URL"):
        auth = env.get("TALLY_ALERT_WEBHOOK_AUTHORIZATION")
        webhook = WebhookConfig(env["TALLY_ALERT_WEBHOOK_URL"], {"Authorization": auth} if auth else {})
    if env.get("TALLY_ALERT_SMTP_HOST"):
        smtp = SmtpConfig(
            host=env["TALLY_ALERT_SMTP_HOST"], port=int(env.get("TALLY_ALERT_SMTP_PORT") or 587),
            sender=env.get("TALLY_ALERT_SMTP_FROM") or "tally@localhost",
            to=split_addresses(env.get("TALLY_ALERT_SMTP_TO", "")),
            login=env.get("TALLY_ALERT_SMTP_USER", ""), password=env.get("TALLY_ALERT_SMTP_PASSWORD", ""),
            starttls=as_bool(env.get("TALLY_ALERT_SMTP_STARTTLS"), True),
            ssl=as_bool(env.get("TALLY_ALERT_SMTP_SSL"), False),
            ca_bundle=env.get("TALLY_ALERT_SMTP_CA_BUNDLE") or None,
        )
    return AlertConfig(
        slack=slack, webhook=webhook, smtp=smtp,
        data_docs_url=env.get("TALLY_DATA_DOCS_URL") or default_data_docs_url(),
        runbook_url=env.get("TALLY_RUNBOOK_URL") or DEFAULT_RUNBOOK_URL,
    )


def split_addresses(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if not value:
        return ()
    items = re.split(r"[,;\s]+", value) if isinstance(value, str) else list(value)
    return tuple(a.strip() for a in items if a and a.strip())


def as_bool(value: object, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T/B/X`` -> ``https://hooks.slack.com/***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    return f"{parts.scheme or '?'}://{host}{port}/***"


def _url_path(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path if len(path.strip("/")) >= 8 else ""  # a token-bearing path, not just "/hook"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_PASSWORD_KV = re.compile(r"(?i)\b(password|passwd|pwd|token|secret)(\s*[=:]\s*)(\S+)")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values, passwords in URLs and ``password=...`` pairs from text."""
    if not text:
        return text
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _PASSWORD_KV.sub(lambda m: f"{m[1]}{m[2]}***", text)
