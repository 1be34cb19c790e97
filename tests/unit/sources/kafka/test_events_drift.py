"""Schema drift of the event stream: fields outside the contract, contract fields missing or retyped,
counted per file and ds in the raw manifest and judged by the ``schema.kafka.<name>`` result."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tally import sfid
from tally.sources.kafka import layout
from tally.sources.kafka.landing import Msg, land_batch
from tally.sources.kafka.ledger import ds_summary, schema_result
from tally.sources.kafka.schema import ExtraRow, parse_row, parse_value, quarantine_signal

TOPIC = "tally.activity"
RAW = layout.dataset_path(TOPIC)
ACCOUNT = sfid.make("001", 5000)
TS = int(datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp() * 1000)
DS = "2026-01-05"
GOOD = {
    "event_id": "e-1", "event_type": "page_view", "account_id": ACCOUNT, "user_email": "ana@acme.example",
    "occurred_at": "2026-01-05T09:12:03.123Z", "properties": {"path": "/pricing"},
}


def _value(**changes) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_a_valid_event_with_fields_outside_the_contract_lands_and_names_them():
    plain = parse_row(_value())
    assert type(plain) is tuple  # the hot path's type: no drift, nothing extra
    # the extra field before the contract's and after them alike
    for value in (b'{"campaign": "spring", ' + _value()[1:], _value(campaign="spring", score=3)):
        row = parse_row(value)
        assert isinstance(row, ExtraRow) and tuple(row) == plain
        assert "campaign" in row.extra and row.extra["campaign"] == "string"
    assert parse_row(_value(campaign="spring", score=3)).extra == {"campaign": "string", "score": "integer"}
    # the slow path (a timestamp msgspec refuses) names them too; parse_value is unchanged
    slow = parse_row(_value(occurred_at="2026-01-05 09:12:03.123+00:00", campaign=None))
    assert isinstance(slow, ExtraRow) and slow.extra == {"campaign": "null"}
    assert parse_value(_value(campaign="x")).row["event_id"] == "e-1"


def test_a_quarantined_event_keeps_its_reason_and_tells_the_type_seen():
    assert parse_row(_value(occurred_at=1736068323123, campaign="x")) == "wrong_type:occurred_at"
    assert quarantine_signal(_value(occurred_at=1736068323123, campaign="x"), "wrong_type:occurred_at") == (
        {"campaign": "string"}, "integer")
    assert quarantine_signal(_value(user_email=...), "missing:user_email") == ({}, None)
    assert quarantine_signal(b"not json", "not_json") == ({}, None)


def _msgs(values: list[bytes], partition: int = 0, first: int = 0) -> list[Msg]:
    return [Msg(TOPIC, partition, first + i, TS, b"k", v) for i, v in enumerate(values)]


def test_land_batch_records_drift_per_file_and_per_ds(lake):
    p0 = [_value(event_id=f"a{i}") for i in range(5)] + [
        _value(event_id="x1", campaign="spring"), _value(event_id="x2", campaign=7, utm={"s": 1}),
        _value(event_id="r1", occurred_at=1736068323123), _value(event_id="m1", user_email=...),
        _value(event_id="m2", user_email=None), b"not json"]
    p1 = [_value(event_id=f"b{i}") for i in range(3)] + [_value(event_id="r2", occurred_at=17.5)]
    result = land_batch(lake, TOPIC, _msgs(p0) + _msgs(p1, partition=1))
    assert (result.landed, result.quarantined) == (10, 5)  # quarantined and counted as before
    manifest = lake.read_manifest(RAW, DS)
    drift = manifest["schema_drift"]
    assert drift["added"] == ["campaign", "utm"]
    assert drift["added_types"] == {"campaign": "integer|string", "utm": "object"}
    assert drift["removed"] == ["user_email"]
    assert drift["retyped"] == {"occurred_at": {"landed": "string", "now": "integer|number"}}
    assert drift["events"] == {"added": {"campaign": 2, "utm": 1}, "removed": {"user_email": 2},
                               "retyped": {"occurred_at": 2}}
    entries = manifest["entries"]
    assert entries["p1-o0-3.parquet"]["schema_drift"] == {
        "added": {}, "removed": {}, "retyped": {"occurred_at": 1}, "types": {"occurred_at": ["number"]}}
    assert entries["p0-o0-10.parquet"]["schema_drift"]["removed"] == {"user_email": 2}
    assert result.drift.drift()["events"] == drift["events"]
    assert ds_summary(lake, TOPIC, DS)["schema_drift"] == drift

    # A replay that supersedes p1's file (same offsets, now clean) recounts; nothing doubles.
    land_batch(lake, TOPIC, _msgs([_value(event_id=f"b{i}") for i in range(4)], partition=1))
    again = lake.read_manifest(RAW, DS)["schema_drift"]
    assert again["retyped"] == {"occurred_at": {"landed": "string", "now": "integer"}}
    assert again["events"]["retyped"] == {"occurred_at": 1} and again["events"]["added"] == {"campaign": 2, "utm": 1}


def test_a_clean_ds_records_no_drift(lake):
    land_batch(lake, TOPIC, _msgs([_value(event_id=f"a{i}") for i in range(3)]))
    drift = lake.read_manifest(RAW, DS)["schema_drift"]
    assert drift == {"added": [], "removed": [], "retyped": {}, "added_types": {},
                     "events": {"added": {}, "removed": {}, "retyped": {}}}
    assert "schema_drift" not in lake.read_manifest(RAW, DS)["entries"]["p0-o0-2.parquet"]
    result = schema_result(TOPIC, DS, drift)
    assert result.success and not result.warnings and result.suite == "schema.kafka.activity"


def test_schema_result_fails_on_missing_or_retyped_fields_and_warns_on_added(lake):
    land_batch(lake, TOPIC, _msgs([_value(event_id="a", campaign="x"), _value(event_id="b", occurred_at=5),
                                   _value(event_id="c", account_id=...)]))
    result = schema_result(TOPIC, DS, ds_summary(lake, TOPIC, DS)["schema_drift"])
    assert (result.hop, result.dataset, result.success, result.failed) == ("raw", "kafka.activity", False, 2)
    assert [(f["expectation"], f["column"]) for f in result.failures] == [
        ("source_field_still_exists", "account_id"), ("source_field_type_unchanged", "occurred_at")]
    assert result.failures[1]["observed"] == "integer in 1 of ? event(s)"
    assert [w["column"] for w in result.warnings] == [["campaign"]]
    assert "campaign (1 event(s))" in result.summary()

    only_added = schema_result(TOPIC, DS, {"added": ["campaign"], "removed": [], "retyped": {},
                                           "events": {"added": {"campaign": 4}}})
    assert only_added.success and only_added.failed == 0 and len(only_added.warnings) == 1



def test_a_trickle_of_malformed_events_is_a_warning_a_changed_producer_fails(lake):
    """Missing or retyped in under DRIFT_SHARE of the ds's events: malformed rows (quarantined and
    counted), a warning; in more: the producer changed, the schema check fails."""
    land_batch(lake, TOPIC, _msgs([_value(event_id=f"a{i}") for i in range(98)]
                                  + [_value(event_id="b", occurred_at=5), _value(event_id="c", account_id=...)]))
    summary = ds_summary(lake, TOPIC, DS)
    trickle = schema_result(TOPIC, DS, summary["schema_drift"], messages=summary["messages"])
    assert trickle.success and trickle.failed == 0
    assert sorted(w["column"] for w in trickle.warnings) == ["account_id", "occurred_at"]
    assert trickle.warnings[0]["observed"].endswith("of 100 event(s)") and trickle.evaluated == 3
    changed = schema_result(TOPIC, DS, summary["schema_drift"], messages=20)  # 1 of 20: 5 %
    assert not changed.success and changed.failed == 2 and not changed.warnings
