"""The activity event contract: required fields, types, and how a raw Kafka value is judged.

An event is a JSON object::

    {"event_id": "…", "event_type": "page_view", "account_id": "0015g00000…",
     "user_email": "ana@acme.example", "occurred_at": "2026-01-05T09:12:03.123Z",
     "properties": {"path": "/pricing"}}

``parse_value`` turns a message value into a typed row or a quarantine reason. Reasons are
short, stable codes (``not_json``, ``missing:event_id``, ``wrong_type:occurred_at``…) so on-call
can count them; the raw value itself goes to quarantine with the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, NamedTuple

import msgspec
import pyarrow as pa

from tally import sfid

EVENT_TYPES = ("page_view", "feature_used", "login", "email_open")
REQUIRED = ("event_id", "event_type", "account_id", "user_email", "occurred_at")
KEY = "event_id"
FIELDS = ("event_id", "event_type", "account_id", "user_email", "occurred_at", "properties")

# What lands in raw/kafka/<name>/: the event's fields, then where it came from in Kafka.
EVENT_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), False),
    pa.field("event_type", pa.string(), False),
    pa.field("account_id", pa.string(), False),  # 18-character form
    pa.field("user_email", pa.string(), False),
    pa.field("occurred_at", pa.timestamp("us", tz="UTC"), False),
    pa.field("properties", pa.string(), False),  # the JSON object as sent: its shape varies by event_type
    pa.field("_kafka_topic", pa.string(), False),
    pa.field("_kafka_partition", pa.int32(), False),
    pa.field("_kafka_offset", pa.int64(), False),
    pa.field("_kafka_timestamp", pa.timestamp("ms", tz="UTC"), False),
])

# What lands in quarantine/kafka/<name>/: enough to replay or diagnose the message by hand.
QUARANTINE_SCHEMA = pa.schema([
    pa.field("topic", pa.string(), False),
    pa.field("partition", pa.int32(), False),
    pa.field("offset", pa.int64(), False),
    pa.field("timestamp", pa.timestamp("ms", tz="UTC"), False),
    pa.field("key", pa.string()),
    pa.field("raw_value", pa.string()),  # UTF-8, or backslash-escaped when not valid UTF-8
    pa.field("reason", pa.string(), False),
])


class Parsed(NamedTuple):
    """Either ``row`` (valid) or ``reason`` (quarantine), never both."""

    row: dict | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.row is not None


def _bad(reason: str) -> Parsed:
    return Parsed(None, reason)


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 with an explicit offset (``Z`` or ``+hh:mm``) → aware UTC datetime.

    A naive timestamp is refused: guessing its zone would silently shift events across days.
    """
    moment = datetime.fromisoformat(value)  # 3.11: takes "Z" and any ISO 8601 form
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("no UTC offset")
    return moment.replace(tzinfo=UTC) if not offset else moment.astimezone(UTC)


class _Event(msgspec.Struct):
    """The fast path's shape: required strings, ``properties`` kept as the JSON text sent."""

    event_id: str
    event_type: str
    account_id: str
    user_email: str
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339 with an offset, parsed in C
    properties: msgspec.Raw = msgspec.Raw(b"{}")


_DECODER = msgspec.json.Decoder(_Event)


@lru_cache(maxsize=65_536)
def _account18(value: str) -> str | None:
    try:
        account_id = sfid.to18(value)
    except ValueError:
        return None
    return account_id if account_id and account_id.isalnum() else None


def parse_row(value: bytes | None) -> tuple | str:
    """A valid event as a tuple in the order of :data:`FIELDS`, else the quarantine reason.

    The fast path (msgspec, in C) takes every valid event; anything it refuses is judged
    again by :func:`parse_slow`, which names the reason. Both give the same row for an event
    both accept. The landing calls this once per message, so it stays lean.
    """
    if value is None:
        return "empty"
    try:
        event = _DECODER.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _slow_row(value)
    props = bytes(event.properties)
    if props == b"null":
        props = b"{}"
    account_id = _account18(event.account_id)
    event_id, event_type, email = event.event_id.strip(), event.event_type.strip(), event.user_email.strip()
    if not props.startswith(b"{") or account_id is None or "@" not in email or not (
            event_id and event_type):
        return _slow_row(value)
    occurred_at = event.occurred_at
    if occurred_at.tzinfo is not UTC:
        occurred_at = occurred_at.astimezone(UTC)
    return event_id, event_type, account_id, email.lower(), occurred_at, props.decode()


def parse_value(value: bytes | None) -> Parsed:
    """Validate one message value against the event contract: a row dict or a reason."""
    row = parse_row(value)
    if isinstance(row, str):
        return _bad(row)
    return Parsed(dict(zip(FIELDS, row, strict=True)), None)


def _slow_row(value: bytes) -> tuple | str:
    parsed = parse_slow(value)
    if parsed.row is None:
        return parsed.reason or "?"
    return tuple(parsed.row[name] for name in FIELDS)


def parse_slow(value: bytes | None) -> Parsed:
    """The reference judgement of one value, field by field, with the reason for a refusal."""
    if value is None:
        return _bad("empty")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return _bad("not_utf8")
    try:
        doc = json.loads(text)
    except ValueError:
        return _bad("not_json")
    if not isinstance(doc, dict):
        return _bad("not_object")
    for name in REQUIRED:
        if doc.get(name) is None:
            return _bad(f"missing:{name}")
        if not isinstance(doc[name], str):
            return _bad(f"wrong_type:{name}")
        if not doc[name].strip():
            return _bad(f"missing:{name}")
    props = doc.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        return _bad("wrong_type:properties")
    account_id = _account18(doc["account_id"])
    if account_id is None:
        return _bad("invalid:account_id")
    if "@" not in doc["user_email"]:
        return _bad("invalid:user_email")
    try:
        occurred_at = parse_timestamp(doc["occurred_at"])
    except ValueError:
        return _bad("invalid:occurred_at")
    return Parsed({
        "event_id": doc["event_id"].strip(),
        "event_type": doc["event_type"].strip(),
        "account_id": account_id,
        "user_email": doc["user_email"].strip().lower(),
        "occurred_at": occurred_at,
        # Re-serialised compactly: only reached for an event msgspec's stricter RFC 3339
        # parser refused (a space instead of "T"…); the fast path keeps the text as sent.
        "properties": json.dumps(props, separators=(",", ":"), ensure_ascii=False),
    }, None)


def raw_text(value: bytes | None) -> str | None:
    """A message value as text for quarantine: UTF-8 when it is, else backslash-escaped bytes."""
    if value is None:
        return None
    return value.decode("utf-8", errors="backslashreplace")
