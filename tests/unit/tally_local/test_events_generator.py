"""The event generator: deterministic, realistic enough, and in agreement with the parser."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from tally.sources.kafka.schema import parse_value
from tally_local import generator as crm
from tally_local.events_generator import EventScale, generate_events, summarize

AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
SCALE = EventScale(days=7, events_per_day=600, malformed_rate=0.03)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = generate_events(SCALE, seed=3, as_of=AS_OF)
    b = generate_events(SCALE, seed=3, as_of=AS_OF)
    c = generate_events(SCALE, seed=4, as_of=AS_OF)
    assert [(m.key, m.value, m.timestamp_ms) for m in a] == [(m.key, m.value, m.timestamp_ms) for m in b]
    assert [m.value for m in a] != [m.value for m in c]


def test_every_message_gets_the_reason_the_generator_intended():
    messages = generate_events(SCALE, seed=3, as_of=AS_OF)
    for m in messages:
        parsed = parse_value(m.value)
        assert parsed.reason == m.expected_reason, m.value
        if m.valid:
            assert parsed.row["event_id"] == m.event_id
    summary = summarize(messages)
    assert summary["produced"] == summary["valid"] + summary["malformed"] == len(messages)
    assert 0.01 < summary["malformed"] / summary["produced"] < 0.06
    assert len(summary["by_reason"]) >= 6  # not JSON, missing fields, wrong types, …
    ids = [m.event_id for m in messages if m.valid]
    assert len(ids) == len(set(ids))


def test_volume_window_order_and_lateness():
    messages = generate_events(SCALE, seed=3, as_of=AS_OF)
    stamps = [m.timestamp_ms for m in messages]
    assert stamps == sorted(stamps)  # appended in time order, like a log
    start_ms = int(AS_OF.timestamp() * 1000) - 7 * 86_400_000
    assert start_ms <= stamps[0] and stamps[-1] < int(AS_OF.timestamp() * 1000)
    per_ds = Counter(m.ds for m in messages)
    assert len(per_ds) == 7
    weekend = [n for ds, n in per_ds.items() if datetime.fromisoformat(ds).weekday() >= 5]
    weekday = [n for ds, n in per_ds.items() if datetime.fromisoformat(ds).weekday() < 5]
    assert max(weekend) < min(weekday)
    late = 0
    for m in messages:
        if m.valid:
            occurred = parse_value(m.value).row["occurred_at"]
            assert occurred.timestamp() * 1000 <= m.timestamp_ms
            late += m.ds != occurred.strftime("%Y-%m-%d")
    assert late > 0  # some events arrive on a later day than they occurred


def test_events_reference_the_crm_accounts():
    data = crm.generate(crm.Scale(accounts=20, opportunities=10, users=3, days=7), seed=1, as_of=AS_OF)
    accounts = {a["Id"] for a in data.salesforce["Account"]}
    messages = generate_events(SCALE, seed=1, as_of=AS_OF, accounts=data.salesforce["Account"])
    used = {parse_value(m.value).row["account_id"] for m in messages if m.valid}
    assert used <= accounts and len(used) > 10
    sent = [json.loads(m.value)["account_id"] for m in messages if m.valid]
    assert any(len(s) == 15 for s in sent) and any(len(s) == 18 for s in sent)


def test_without_accounts_the_default_crm_ids_are_used():
    data = crm.generate(crm.Scale(), seed=7, as_of=AS_OF)
    crm_ids = {a["Id"] for a in data.salesforce["Account"]}
    messages = generate_events(EventScale(days=2, events_per_day=300), seed=7, as_of=AS_OF)
    assert {parse_value(m.value).row["account_id"] for m in messages if m.valid} <= crm_ids
