"""Senders: a Slack incoming webhook, a generic JSON webhook and SMTP email (stdlib only).

Each ``send_*`` returns a short detail on success (``"HTTP 200"``) and raises
:class:`DeliveryError` on failure, with a message that names no secret (no webhook URL path, no
password): the dispatcher records it in ``ops.alerts`` and carries on with the next channel.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from tally.alerts.config import SlackConfig, SmtpConfig, WebhookConfig, redact_url
from tally.alerts.model import SAMPLE_SHOWN, Alert, sample_label
from tally.quality.result import format_sample

USER_AGENT = "tally-alerts/1"
PAYLOAD_VERSION = 1
_SLACK_TEXT = 2900  # a section's text may hold 3000 characters
_SLACK_FIELD = 1900  # a field 2000


class DeliveryError(RuntimeError):
    """A channel did not take the alert; the message is safe to store and log."""


# -- payloads -------------------------------------------------------------------------------
def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook's JSON: every field of the alert, plus a dedupe key and the text."""
    return {
        "source": "tally", "type": "tally.alert", "version": PAYLOAD_VERSION,
        "dedupe_key": f"{alert.dag_id}/{alert.ds}/{alert.gate}",
        **alert.to_dict(),
        "text": alert.text(),
    }


def slack_payload(alert: Alert, mention: str = "") -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (notifications, fallback) and Block Kit ``blocks``."""
    text = f"{mention} {alert.title}".strip()
    fields = [("DAG", alert.dag_id), ("ds", alert.ds)]
    if alert.is_gate:
        fields += [("Gate", ", ".join(alert.suites) or alert.gate), ("Dataset / hop", f"{alert.dataset} / {alert.hop}")]
    if alert.task_id:
        fields.append(("Task", alert.task_id + (f" (try {alert.try_number})" if alert.try_number else "")))
    if alert.run_id:
        fields.append(("Run", alert.run_id))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(alert.title.split(" — ")[0], 150)}},
        {"type": "section", "text": _md(f"{mention + ' ' if mention else ''}*What:* {_esc(alert.summary)}")},
        {"type": "section", "fields": [_md(_cut(f"*{k}*\n`{_esc(v)}`", _SLACK_FIELD)) for k, v in fields[:10]]},
    ]
    if alert.failures:
        lines = []
        for f in alert.failures:
            line = f"• `{_esc(f.get('suite'))}` {_esc(f.get('text'))}"
            if f.get("sample"):
                line += (f"\n    {sample_label(f['sample'])}: "
                         + ", ".join(f"`{_esc(format_sample(s))}`" for s in f["sample"][:SAMPLE_SHOWN]))
            lines.append(line)
        blocks.append({"type": "section", "text": _md("*Observed vs expected*\n" + _cut("\n".join(lines), _SLACK_TEXT - 30))})
    if alert.error:
        blocks.append({"type": "section", "text": _md("*Error*\n```" + _cut(_esc(alert.error), _SLACK_TEXT - 20) + "```")})
    if alert.commands:
        blocks.append({"type": "section", "text": _md(
            "*First steps*\n" + "\n".join(f"`{_esc(c)}`" for c in alert.commands))})
    links = [_link(alert.links[k], title) for k, title in (("runbook", "Runbook"), ("data_docs", "Data Docs"),
                                                            ("log", "Task log")) if alert.links.get(k)]
    context = [*links, f"Ack: `{_esc(alert.ack_command())}`"]
    blocks.append({"type": "context", "elements": [_md(_cut(c, 2900)) for c in context][:10]})
    return {"text": text, "blocks": blocks}


def email_message(alert: Alert, cfg: SmtpConfig) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"[tally] {alert.title}"
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="tally.local")
    msg["X-Tally-Alert"] = f"{alert.dag_id}/{alert.ds}/{alert.gate}"
    if alert.id is not None:
        msg["X-Tally-Alert-Id"] = str(alert.id)
    msg.set_content(alert.text())
    return msg


# -- senders --------------------------------------------------------------------------------
def send_slack(alert: Alert, cfg: SlackConfig) -> str:
    return post_json(cfg.url, slack_payload(alert, cfg.mention), {}, cfg.timeout)


def send_webhook(alert: Alert, cfg: WebhookConfig) -> str:
    return post_json(cfg.url, webhook_payload(alert), dict(cfg.headers), cfg.timeout)


def send_email(alert: Alert, cfg: SmtpConfig) -> str:
    if not cfg.to:
        raise DeliveryError("no recipients configured (the 'to' setting is empty)")
    where = f"smtp {cfg.host}:{cfg.port}"
    msg = email_message(alert, cfg)
    context = ssl.create_default_context(cafile=cfg.ca_bundle) if (cfg.ssl or cfg.starttls) else None
    try:
        if cfg.ssl:
            server: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
        else:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with server:
            server.ehlo()
            if cfg.starttls and not cfg.ssl:
                server.starttls(context=context)
                server.ehlo()
            if cfg.login:
                server.login(cfg.login, cfg.password)
            refused = server.send_message(msg)
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"{where}: {type(exc).__name__}: {_smtp_reason(exc)}") from None
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryError(f"{where}: refused recipient(s) {sorted(refused)}")
    return f"accepted for {len(cfg.to)} recipient(s) by {where}"


def post_json(url: str, payload: dict[str, Any], headers: dict[str, str], timeout: float) -> str:
    """POST JSON; raise :class:`DeliveryError` unless the receiver answers 2xx."""
    shown = redact_url(url)
    data = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace").strip() if exc.fp else ""
        raise DeliveryError(f"{shown} answered HTTP {exc.code} {exc.reason}" + (f": {body}" if body else "")) from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach {shown}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
        raise DeliveryError(f"cannot post to {shown}: {type(exc).__name__}: {exc}") from None
    return f"HTTP {status}"


# -- helpers --------------------------------------------------------------------------------
def _smtp_reason(exc: smtplib.SMTPException) -> str:
    code, text = getattr(exc, "smtp_code", None), getattr(exc, "smtp_error", None)
    if code is not None:
        detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
        return f"{code} {detail}".strip()
    return str(exc)


def _md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _esc(value: Any) -> str:
    """Slack mrkdwn escaping: only &, < and > are control characters."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, title: str) -> str:
    if url.startswith(("http://", "https://")):
        return f"<{url}|{title}>"
    return f"{title}: `{_esc(url)}`"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
