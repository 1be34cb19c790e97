"""The event contract: what lands, what is quarantined and why; file naming and ds."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tally import sfid
from tally.sources.kafka import layout
from tally.sources.kafka.schema import parse_value

ACCOUNT = sfid.make("001", 5000)
GOOD = {
    "event_id": "e-1", "event_type": "page_view", "account_id": ACCOUNT, "user_email": "Ana@Acme.example",
    "occurred_at": "2026-01-05T09:12:03.123Z", "properties": {"path": "/pricing"},
}


def _value(**changes) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_valid_event_is_typed_and_normalised():
    parsed = parse_value(_value(account_id=ACCOUNT[:15], occurred_at="2026-01-05T10:12:03.123+01:00"))
    assert parsed.ok and parsed.reason is None
    row = parsed.row
    assert row["account_id"] == ACCOUNT  # 15-char form normalised to 18
    assert row["occurred_at"] == datetime(2026, 1, 5, 9, 12, 3, 123000, tzinfo=UTC)
    assert row["user_email"] == "ana@acme.example"
    assert json.loads(row["properties"]) == {"path": "/pricing"}


def test_properties_are_optional():
    assert parse_value(_value(properties=...)).row["properties"] == "{}"
    assert parse_value(_value(properties=None)).row["properties"] == "{}"


@pytest.mark.parametrize(("value", "reason"), [
    (None, "empty"),
    (b"\xff\xfe{", "not_utf8"),
    (b'{"event_id": "e-1", "event_ty', "not_json"),
    (b"login for 0015g", "not_json"),
    (b"[1, 2]", "not_object"),
    (b'"just a string"', "not_object"),
    (_value(event_id=...), "missing:event_id"),
    (_value(event_id=""), "missing:event_id"),
    (_value(user_email=None), "missing:user_email"),
    (_value(occurred_at=...), "missing:occurred_at"),
    (_value(account_id=12345), "wrong_type:account_id"),
    (_value(occurred_at=1767600000000), "wrong_type:occurred_at"),
    (_value(event_type=["page_view"]), "wrong_type:event_type"),
    (_value(properties=[{"path": "/"}]), "wrong_type:properties"),
    (_value(account_id="0015g0000"), "invalid:account_id"),
    (_value(account_id="0015g00000!@#$%^&*("), "invalid:account_id"),
    (_value(user_email="nobody"), "invalid:user_email"),
    (_value(occurred_at="2026-01-05 09:12:03"), "invalid:occurred_at"),  # no offset: ambiguous
    (_value(occurred_at="yesterday"), "invalid:occurred_at"),
])
def test_malformed_messages_get_a_stable_reason(value, reason):
    parsed = parse_value(value)
    assert not parsed.ok and parsed.row is None
    assert parsed.reason == reason


def test_file_names_derive_from_partition_and_offset_range():
    assert layout.file_name(2, 100, 199) == "p2-o100-199.parquet"
    assert layout.parse_file_name("p2-o100-199.parquet") == layout.OffsetRange(2, 100, 199)
    for bad in ("part-0.parquet", "p1-o5.parquet", "p1-o1-2.json"):
        with pytest.raises(ValueError):
            layout.parse_file_name(bad)
    with pytest.raises(ValueError):
        layout.file_name(0, 10, 9)


def test_a_replay_supersedes_overlapping_files_of_the_same_partition_only():
    existing = ["p0-o0-99.parquet", "p0-o100-149.parquet", "p1-o0-99.parquet", "p0-o150-199.parquet"]
    assert layout.superseded(existing, ["p0-o100-249.parquet"]) == ["p0-o100-149.parquet", "p0-o150-199.parquet"]
    assert layout.superseded(existing, ["p0-o0-99.parquet"]) == ["p0-o0-99.parquet"]
    assert layout.superseded(existing, ["p2-o0-999.parquet"]) == []


def test_ds_is_the_utc_date_of_the_record_timestamp():
    midnight = int(datetime(2026, 1, 6, tzinfo=UTC).timestamp() * 1000)
    assert layout.ds_of(midnight - 1) == "2026-01-05"
    assert layout.ds_of(midnight) == "2026-01-06"
    assert layout.ds_of(-1, fallback=datetime(2026, 2, 1, 12, tzinfo=UTC)) == "2026-02-01"


def test_paths_and_ledger_names_come_from_the_topic():
    assert layout.dataset_path("tally.activity") == "raw/kafka/activity"
    assert layout.dataset_path("tally.activity", layout.QUARANTINE_ZONE) == "quarantine/kafka/activity"
    assert layout.ledger_dataset("tally.activity") == "kafka.activity"


def test_the_fast_path_and_the_reference_parser_agree():
    from tally.sources.kafka.schema import parse_slow
    from tally_local.events_generator import EventScale, generate_events

    values = [m.value for m in generate_events(EventScale(days=2, events_per_day=400, malformed_rate=0.2), seed=9)]
    values += [
        _value(properties={"name": "Zoë", "n": [1, {"x": None}]}),
        b'{ "event_id" : "e", "event_type":"login", "account_id":"' + ACCOUNT.encode()
        + b'", "user_email":"a@b.c", "occurred_at":"2026-01-05T09:12:03Z", "properties" : { "a" : 1 } , "extra": 1}',
        _value(event_id="  "), _value(properties="{}"), _value(account_id=ACCOUNT.lower()),
    ]
    for value in values:
        fast, slow = parse_value(value), parse_slow(value)
        assert fast.reason == slow.reason, value
        if fast.ok:
            assert {**fast.row, "properties": json.loads(fast.row["properties"])} == {
                **slow.row, "properties": json.loads(slow.row["properties"])}
