"""Raise an alert: record it in ``ops.alerts`` (the dedupe), then send it on every channel.

:func:`raise_alert` never raises: an alert is raised while something else is already failing,
and a broken channel or an unreachable warehouse must not hide that failure. Each channel is
tried on its own; its outcome is stored in the row. When the warehouse cannot be reached the
alert is still sent (on-call must hear of it), marked as unrecorded: a later repeat may then
send again, which is better than staying silent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tally.alerts.config import AlertConfig, redact
from tally.alerts.model import Alert

log = logging.getLogger("tally.alerts")


@dataclass
class Outcome:
    alert: Alert
    sent: bool = False  # this call was the first for (dag_id, ds, gate) and tried the channels
    duplicate: bool = False  # an earlier call already alerted: nothing was sent
    recorded: bool = False  # ops.alerts holds the alert
    delivery: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None  # why it could not be recorded

    def describe(self) -> str:
        where = f"alert {self.alert.id if self.alert.id is not None else '(unrecorded)'} " \
                f"{self.alert.dag_id} ds={self.alert.ds} {self.alert.gate}"
        if self.duplicate:
            return f"{where}: already raised, not sent again"
        sent = ", ".join(f"{c} {d['status']}" + (f" ({d['error']})" if d.get("error") else "")
                         for c, d in self.delivery.items()) or "no channel configured (ops.alerts only)"
        return f"{where}: {sent}" + (f"; not recorded: {self.error}" if self.error else "")


def _senders() -> dict[str, Callable[[Alert, Any], str]]:
    from tally.alerts import channels

    return {"slack": channels.send_slack, "webhook": channels.send_webhook, "email": channels.send_email}


def raise_alert(alert: Alert, config: AlertConfig, conninfo: str | None) -> Outcome:
    """Record ``alert`` in the warehouse at ``conninfo`` unless its (dag_id, ds, gate) already
    is, and if this call recorded it (or could not reach the warehouse), send it."""
    secrets = config.secrets()
    alert.title, alert.summary = redact(alert.title, secrets), redact(alert.summary, secrets)
    alert.error = redact(alert.error, secrets) if alert.error else alert.error
    names = config.channels()
    outcome = Outcome(alert)
    conn = _connect(conninfo, outcome, secrets)
    try:
        if conn is not None:
            try:
                from tally.alerts import store

                alert.id = store.claim(conn, alert, names)
                if alert.id is None:
                    alert.id = store.existing_id(conn, alert)
                    if alert.id is not None:
                        store.save_payload(conn, alert.id, alert)  # the latest failure, with its id
                    outcome.duplicate = outcome.recorded = True
                    log.info("%s", outcome.describe())
                    return outcome
                outcome.recorded = True
                store.save_payload(conn, alert.id, alert)  # now with its id (the ack command)
            except Exception as exc:  # a broken ops table must not stop the page
                outcome.error = redact(f"{type(exc).__name__}: {exc}", secrets).strip()
                log.warning("could not record the alert in ops.alerts (%s); sending it anyway", outcome.error)
                if not outcome.recorded:
                    conn = _close(conn)
        outcome.sent = True
        senders = _senders()
        for name in names:
            status = _send(senders[name], alert, config.channel(name), secrets)
            outcome.delivery[name] = status
            if conn is not None and alert.id is not None:
                try:
                    from tally.alerts import store

                    store.record_delivery(conn, alert.id, name, status)
                except Exception as exc:
                    log.warning("could not record %s delivery of alert %s: %s", name, alert.id,
                                redact(str(exc), secrets))
        log.log(logging.WARNING if any(d["status"] != "sent" for d in outcome.delivery.values()) else logging.INFO,
                "%s", outcome.describe())
        return outcome
    finally:
        _close(conn)


def _send(sender: Callable[[Alert, Any], str], alert: Alert, cfg: Any, secrets: list[str]) -> dict[str, Any]:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        detail = sender(alert, cfg)
    except Exception as exc:  # DeliveryError, or a bug in a renderer: either way, record it and go on
        from tally.alerts.channels import DeliveryError

        text = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
        return {"status": "failed", "error": redact(text, secrets)[:500], "at": at}
    return {"status": "sent", "detail": redact(str(detail), secrets)[:200], "at": at}


def _connect(conninfo: str | None, outcome: Outcome, secrets: list[str]):
    if not conninfo:
        outcome.error = "no warehouse configured"
        return None
    try:
        import psycopg

        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except Exception as exc:
        outcome.error = redact(f"{type(exc).__name__}: {exc}", [*secrets, *_conninfo_password(conninfo)]).strip()
        log.warning("cannot reach the warehouse to record the alert (%s); sending it anyway", outcome.error)
        return None


def _close(conn) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):  # closing a broken connection
            conn.close()
    return None


def _conninfo_password(conninfo: str) -> list[str]:
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(conninfo).get("password")
    except Exception:
        return []
    return [str(password)] if password else []
