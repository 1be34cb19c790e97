"""Deterministic activity events for the embedded stack and the tests, and a producer for them.

``generate_events(scale, seed, as_of, accounts)`` returns the exact messages (key, value,
record timestamp) a seed gives, byte for byte, including a small share of malformed ones
with the quarantine reason each must get. ``produce_events(bootstrap, topic, …)`` sends
them to Kafka in record-timestamp order (one log, appended in time order).

Realism: volume follows office hours and weekdays; each account has a few users; ~3 % of
valid events carry the 15-character form of the account id (the landing normalises it);
~2 % arrive late (record timestamp hours to days after ``occurred_at``, like an offline
mobile client), so a ds holds some events that occurred on earlier days.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tally import sfid
from tally.contract import EVENTS_TOPIC
from tally.sources.kafka.layout import ds_of

DEFAULT_PARTITIONS = 3

# Relative volume by UTC hour: quiet nights, a morning and an afternoon peak.
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 6, 10, 12, 12, 11, 9, 11, 12, 12, 10, 8, 5, 4, 3, 2, 2, 1]
EVENT_WEIGHTS = {"page_view": 55, "feature_used": 25, "login": 12, "email_open": 8}
PAGES = ["/", "/dashboard", "/reports", "/pricing", "/settings", "/billing", "/integrations", "/help"]
FEATURES = ["export_csv", "forecast", "pipeline_board", "custom_report", "api_token", "sso_setup"]
CAMPAIGNS = ["cmp-onboarding", "cmp-renewal", "cmp-webinar", "cmp-release-notes"]
FIRST = ["ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena"]
LAST = ["silva", "meyer", "tanaka", "okafor", "novak", "haddad", "kim", "rossi", "berg", "diaz"]
MALFORMED_KINDS = (
    "truncated_json", "not_utf8", "plain_text", "json_array", "missing_field", "epoch_occurred_at",
    "int_account_id", "list_properties", "short_account_id", "naive_occurred_at",
)


@dataclass(frozen=True)
class EventScale:
    days: int = 30
    events_per_day: int = 1000  # on an average weekday; weekends see about a third
    malformed_rate: float = 0.01
    late_rate: float = 0.02
    short_id_rate: float = 0.03
    synthetic_accounts: int = 200  # used only when no accounts are given


@dataclass(frozen=True)
class EventMessage:
    key: bytes
    value: bytes
    timestamp_ms: int
    event_id: str | None  # the event's id when valid
    expected_reason: str | None  # the quarantine reason when malformed

    @property
    def valid(self) -> bool:
        return self.expected_reason is None

    @property
    def ds(self) -> str:
        return ds_of(self.timestamp_ms)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _account_ids(accounts: Sequence[dict] | Sequence[str] | None, scale: EventScale) -> list[str]:
    if accounts:
        ids = [a["Id"] if isinstance(a, dict) else a for a in accounts]
        return [sfid.to18(i) for i in ids if i]
    # The same ids tally_local.generator gives its accounts, so events join the CRM by default.
    return [sfid.make("001", 5000 + n) for n in range(scale.synthetic_accounts)]


def _users(rng: random.Random, account_id: str) -> list[str]:
    domain = f"acct-{account_id[-9:-3].lower()}.example.com"
    count = rng.choice([1, 1, 2, 2, 3, 4, 6])
    return [f"{rng.choice(FIRST)}.{rng.choice(LAST)}{n or ''}@{domain}" for n in range(count)]


def _properties(rng: random.Random, event_type: str) -> dict:
    if event_type == "page_view":
        return {"path": rng.choice(PAGES), "duration_ms": rng.randrange(200, 120_000)}
    if event_type == "feature_used":
        return {"feature": rng.choice(FEATURES), "count": rng.randint(1, 5)}
    if event_type == "login":
        return {"method": rng.choice(["sso", "password", "sso", "magic_link"]), "success": rng.random() > 0.04}
    return {"campaign_id": rng.choice(CAMPAIGNS), "client": rng.choice(["gmail", "outlook", "apple_mail"])}


def _delay(rng: random.Random, late_rate: float) -> timedelta:
    roll = rng.random()
    if roll < late_rate:  # an offline client catching up
        return timedelta(seconds=rng.randrange(3_600, 3 * 86_400))
    if roll < late_rate + 0.05:
        return timedelta(seconds=rng.randrange(30, 3_600))
    return timedelta(milliseconds=rng.randrange(20, 30_000))


def _malform(rng: random.Random, doc: dict) -> tuple[bytes, str]:
    kind = rng.choice(MALFORMED_KINDS)
    text = json.dumps(doc)
    if kind == "truncated_json":
        return text[: rng.randrange(5, len(text) - 2)].encode(), "not_json"
    if kind == "not_utf8":
        return b"\xff\xfe" + text.encode("utf-16-le")[:40], "not_utf8"
    if kind == "plain_text":
        return f"event {doc['event_type']} for {doc['account_id']}".encode(), "not_json"
    if kind == "json_array":
        return json.dumps([doc]).encode(), "not_object"
    if kind == "missing_field":
        name = rng.choice(["event_id", "event_type", "account_id", "user_email", "occurred_at"])
        return json.dumps({k: v for k, v in doc.items() if k != name}).encode(), f"missing:{name}"
    if kind == "epoch_occurred_at":
        moment = datetime.fromisoformat(doc["occurred_at"].replace("Z", "+00:00"))
        return json.dumps({**doc, "occurred_at": _ms(moment)}).encode(), "wrong_type:occurred_at"
    if kind == "int_account_id":
        return json.dumps({**doc, "account_id": rng.randrange(10**9)}).encode(), "wrong_type:account_id"
    if kind == "list_properties":
        return json.dumps({**doc, "properties": [doc["properties"]]}).encode(), "wrong_type:properties"
    if kind == "short_account_id":
        return json.dumps({**doc, "account_id": doc["account_id"][:12]}).encode(), "invalid:account_id"
    naive = doc["occurred_at"].replace("Z", "").replace("T", " ")
    return json.dumps({**doc, "occurred_at": naive}).encode(), "invalid:occurred_at"


def generate_events(scale: EventScale = EventScale(), seed: int = 7, as_of: datetime | None = None,
                    accounts: Sequence[dict] | Sequence[str] | None = None) -> list[EventMessage]:
    """Every message of ``scale.days`` days before ``as_of`` (midnight UTC today by default),
    in append order (by record timestamp). Same arguments, same bytes."""
    if as_of is None:
        now = datetime.now(UTC)
        as_of = datetime(now.year, now.month, now.day, tzinfo=UTC)
    as_of = as_of.astimezone(UTC)
    rng = random.Random(f"tally-events-{seed}")
    account_ids = _account_ids(accounts, scale)
    if not account_ids:
        raise ValueError("no accounts to attach events to")
    users = {a: _users(rng, a) for a in account_ids}
    # A few accounts are much busier than the rest (power users).
    weights = [rng.paretovariate(1.5) for _ in account_ids]
    types, type_weights = list(EVENT_WEIGHTS), list(EVENT_WEIGHTS.values())
    start = as_of - timedelta(days=scale.days)
    out: list[tuple[int, int, EventMessage]] = []
    seq = 0
    for day in range(scale.days):
        midnight = start + timedelta(days=day)
        weekday_factor = 0.35 if midnight.weekday() >= 5 else 1.0
        count = round(scale.events_per_day * weekday_factor * rng.uniform(0.85, 1.15))
        hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=count)
        chosen = rng.choices(account_ids, weights=weights, k=count)
        for hour, account_id in zip(hours, chosen, strict=True):
            occurred = midnight + timedelta(hours=hour, milliseconds=rng.randrange(3_600_000))
            appended = min(occurred + _delay(rng, scale.late_rate), as_of - timedelta(milliseconds=1))
            event_type = rng.choices(types, weights=type_weights)[0]
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            sent_id = account_id[:15] if rng.random() < scale.short_id_rate else account_id
            doc = {
                "event_id": event_id,
                "event_type": event_type,
                "account_id": sent_id,
                "user_email": rng.choice(users[account_id]),
                "occurred_at": _iso(occurred),
                "properties": _properties(rng, event_type),
            }
            if rng.random() < scale.malformed_rate:
                value, reason = _malform(rng, doc)
                message = EventMessage(account_id.encode(), value, _ms(appended), None, reason)
            else:
                value = json.dumps(doc, separators=(",", ":")).encode()
                message = EventMessage(account_id.encode(), value, _ms(appended), event_id, None)
            out.append((message.timestamp_ms, seq, message))
            seq += 1
    out.sort(key=lambda t: (t[0], t[1]))
    return [m for _, _, m in out]


def summarize(messages: Iterable[EventMessage]) -> dict:
    """Counts of what was (or would be) produced: the ground truth for reconciliation."""
    reasons: Counter[str] = Counter()
    per_ds: Counter[str] = Counter()
    produced = valid = 0
    for m in messages:
        produced += 1
        per_ds[m.ds] += 1
        if m.valid:
            valid += 1
        else:
            reasons[m.expected_reason or "?"] += 1
    return {"produced": produced, "valid": valid, "malformed": produced - valid,
            "by_reason": dict(sorted(reasons.items())), "per_ds": dict(sorted(per_ds.items()))}


# -- Kafka -------------------------------------------------------------------------------
def ensure_topic(bootstrap: str, topic: str, partitions: int = DEFAULT_PARTITIONS) -> bool:
    """Create ``topic`` with ``partitions`` if it does not exist; True if it was created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tally-admin")
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def topic_has_messages(bootstrap: str, topic: str) -> bool:
    """Whether ``topic`` holds any message (by fetching: tansu's end_offsets can't be trusted)."""
    from tally.sources.kafka.probe import highwaters

    return any(high > low for low, high in highwaters(bootstrap, topic).values())


def send(bootstrap: str, topic: str, messages: Iterable[EventMessage]) -> int:
    """Append ``messages`` in order; returns how many the broker acknowledged (raises on any failure)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024,
        # One request in flight per connection: a retry can't reorder the log, so the same
        # seed gives the same offsets.
        max_in_flight_requests_per_connection=1, retries=5, client_id="tally-events-producer",
    )
    futures = []
    try:
        for m in messages:
            futures.append(producer.send(topic, key=m.key, value=m.value, timestamp_ms=m.timestamp_ms))
        producer.flush()
    finally:
        producer.close()
    for f in futures:
        f.get(timeout=0)  # raises the send's error, if any
    return len(futures)


def produce_events(bootstrap: str, topic: str = EVENTS_TOPIC, *, seed: int = 7,
                   scale: EventScale = EventScale(), as_of: datetime | None = None,
                   accounts: Sequence[dict] | Sequence[str] | None = None,
                   partitions: int = DEFAULT_PARTITIONS, if_empty: bool = True) -> dict:
    """Create ``topic`` if needed and produce the seed's events to it.

    With ``if_empty`` (the default, what ``tally seed`` wants) nothing is sent when the topic
    already holds messages, so seeding twice does not append the same events twice. Returns
    :func:`summarize`'s counts plus ``topic``, ``sent`` and ``skipped``.
    """
    ensure_topic(bootstrap, topic, partitions)
    messages = generate_events(scale, seed, as_of, accounts)
    summary = {"topic": topic, **summarize(messages)}
    if if_empty and topic_has_messages(bootstrap, topic):
        return {**summary, "sent": 0, "skipped": True}
    return {**summary, "sent": send(bootstrap, topic, messages), "skipped": False}
