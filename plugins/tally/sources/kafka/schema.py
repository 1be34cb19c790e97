"""The activity event contract: required fields, types, and how a raw Kafka value is judged.

An event is a JSON object::

    {"event_id": "…", "event_type": "page_view", "account_id": "0015g00000…",
     "user_email": "ana@acme.example", "occurred_at": "2026-01-05T09:12:03.123Z",
     "properties": {"path": "/pricing"}}

``parse_value`` turns a message value into a typed row or a quarantine reason. Reasons are
short, stable codes (``not_json``, ``missing:event_id``, ``wrong_type:occurred_at``…) so on-call
can count them; the raw value itself goes to quarantine with the reason.

Schema drift (what the landing records per file and ds, :func:`drift_of`): a valid event with
top-level fields outside :data:`FIELDS` comes back from :func:`parse_row` as an
:class:`ExtraRow` naming them (the fast path refuses unknown fields, so only such events pay
for it); a quarantined one's extra fields and the JSON type a ``wrong_type:<field>`` had are
read back by :func:`quarantine_signal`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, NamedTuple

import msgspec
import pyarrow as pa

from tally import sfid
from tally.sources.drift import Drift

EVENT_TYPES = ("page_view", "feature_used", "login", "email_open")
REQUIRED = ("event_id", "event_type", "account_id", "user_email", "occurred_at")
KEY = "event_id"
FIELDS = ("event_id", "event_type", "account_id", "user_email", "occurred_at", "properties")
# The contract's JSON type per field, as drift names types (occurred_at: an RFC 3339 string).
CONTRACT_TYPES = {**{name: "string" for name in REQUIRED}, "properties": "object"}
_CONTRACT = frozenset(FIELDS)

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


class _Strict(_Event, forbid_unknown_fields=True):
    """The first try: an event with a field outside the contract is refused (and looked at again)."""


_DECODER = msgspec.json.Decoder(_Strict)
_LENIENT = msgspec.json.Decoder(_Event)
_UNKNOWN = "Object contains unknown field"
_NOT_AN_OBJECT = frozenset({"empty", "not_utf8", "not_json", "not_object"})


class ExtraRow(tuple):
    """A valid event's row (as :func:`parse_row` gives it) whose event carried top-level fields
    outside the contract: ``extra`` maps each to the JSON type it had."""

    extra: dict[str, str]


def _with_extra(row: tuple | str, extra: dict[str, str]) -> tuple | str:
    if not extra or isinstance(row, str):
        return row
    out = ExtraRow(row)
    out.extra = extra
    return out


def json_type(value: object) -> str:
    """The JSON type name of a decoded value (``string``, ``integer``, ``number``, ``object``…)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _document(value: bytes | None) -> dict | None:
    try:
        doc = msgspec.json.decode(value) if value is not None else None
    except msgspec.DecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def extra_fields(doc: dict) -> dict[str, str]:
    """The top-level fields of an event outside the contract, each with its JSON type."""
    return {k: json_type(v) for k, v in doc.items() if k not in _CONTRACT}


def quarantine_signal(value: bytes | None, reason: str) -> tuple[dict[str, str], str | None]:
    """For a quarantined message (the slow path only): its fields outside the contract, and
    for a ``wrong_type:<field>`` reason the JSON type that field had (else None)."""
    doc = _document(value) if reason not in _NOT_AN_OBJECT else None
    if doc is None:
        return {}, None
    seen = None
    if reason.startswith("wrong_type:"):
        seen = json_type(doc.get(reason.partition(":")[2]))
    return extra_fields(doc), seen


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
    both accept. The landing calls this once per message, so it stays lean. An event with
    top-level fields outside the contract is refused by the strict fast decoder and decoded
    again leniently: its row comes back as an :class:`ExtraRow` naming them (a plain tuple
    otherwise, so the landing's ``type(row) is tuple`` check stays the hot path's only cost).
    """
    if value is None:
        return "empty"
    extra = None
    try:
        event = _DECODER.decode(value)
    except msgspec.ValidationError as exc:
        if not str(exc).startswith(_UNKNOWN):
            return _slow_row(value)
        extra = extra_fields(_document(value) or {})  # only events with fields outside the contract
        try:
            event = _LENIENT.decode(value)
        except msgspec.ValidationError:
            return _slow_row(value)
    except msgspec.DecodeError:
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
    if extra is not None:
        return _with_extra((event_id, event_type, account_id, email.lower(), occurred_at, props.decode()), extra)
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
    return _with_extra(tuple(parsed.row[name] for name in FIELDS), extra_fields(_document(value) or {}))


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


class FieldDrift:
    """The events of one file (or ds) that departed from the contract's fields, by field:
    ``added`` (a top-level field outside :data:`FIELDS`, valid or quarantined event alike),
    ``removed`` (quarantined ``missing:<field>``), ``retyped`` (quarantined ``wrong_type:<field>``),
    and ``types`` the JSON types seen of each added or retyped field."""

    __slots__ = ("added", "removed", "retyped", "types")

    def __init__(self) -> None:
        self.added: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.retyped: Counter[str] = Counter()
        self.types: dict[str, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.retyped)

    def extra(self, fields: Mapping[str, str]) -> None:
        for name, seen in fields.items():
            self.added[name] += 1
            self.types.setdefault(name, set()).add(seen)

    def quarantined(self, value: bytes | None, reason: str) -> None:
        """Count a quarantined message: its extra fields, and its reason when that is a
        contract field missing or of another type."""
        extra, seen = quarantine_signal(value, reason)
        self.extra(extra)
        kind, _, name = reason.partition(":")
        if name not in _CONTRACT:
            return
        if kind == "missing":
            self.removed[name] += 1
        elif kind == "wrong_type":
            self.retyped[name] += 1
            self.types.setdefault(name, set()).add(seen or "?")

    def to_entry(self) -> dict:
        """What a file's manifest entry records (``schema_drift``; JSON)."""
        return {"added": dict(sorted(self.added.items())), "removed": dict(sorted(self.removed.items())),
                "retyped": dict(sorted(self.retyped.items())),
                "types": {k: sorted(v) for k, v in sorted(self.types.items())}}

    @classmethod
    def merged(cls, entries: Iterable[Mapping | None]) -> FieldDrift:
        """The sum of files' :meth:`to_entry` (None: a file without drift, or landed before
        drift was recorded)."""
        out = cls()
        for e in entries:
            if not e:
                continue
            out.added.update(e.get("added") or {})
            out.removed.update(e.get("removed") or {})
            out.retyped.update(e.get("retyped") or {})
            for name, seen in (e.get("types") or {}).items():
                out.types.setdefault(name, set()).update(seen)
        return out

    def drift(self) -> dict:
        """The ds's ``schema_drift`` in the shape every source records
        (:meth:`tally.sources.drift.Drift.to_dict`: ``added``, ``removed``, ``retyped`` with
        ``landed``/``now`` types), plus ``added_types`` and ``events`` (how many events, per
        field and kind)."""
        def seen(name: str) -> str:
            return "|".join(sorted(self.types.get(name) or {"?"}))

        found = Drift(added={n: seen(n) for n in sorted(self.added)}, removed=sorted(self.removed),
                      retyped={n: (CONTRACT_TYPES[n], seen(n)) for n in sorted(self.retyped)})
        return {**found.to_dict(), "added_types": found.added,
                "events": {"added": dict(sorted(self.added.items())), "removed": dict(sorted(self.removed.items())),
                           "retyped": dict(sorted(self.retyped.items()))}}


def raw_text(value: bytes | None) -> str | None:
    """A message value as text for quarantine: UTF-8 when it is, else backslash-escaped bytes."""
    if value is None:
        return None
    return value.decode("utf-8", errors="backslashreplace")
