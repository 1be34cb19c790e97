"""Schema drift on the event stream through the stack's tansu broker: events with a field outside
the contract and events with a retyped ``occurred_at`` show in the ds's manifest, its ledger row
and its ``schema.kafka.<name>`` result in ``ops.validation_results``."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest

from tally import ledger
from tally.ledger import validation_log
from tally.sources.kafka import layout
from tally.sources.kafka.landing import land_events
from tally.sources.kafka.ledger import record_ledger
from tally_local.events_generator import EventScale, ensure_topic, generate_events, send

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
FAST = {"session_timeout_ms": 2_000, "poll_timeout_ms": 400, "idle_polls": 2}


def _drifted(messages):
    """Every 10th event sends ``occurred_at`` as epoch ms (a producer change: over DRIFT_SHARE);
    every 7th other event gains a ``campaign`` field."""
    out, added, retyped = [], 0, 0
    for i, m in enumerate(messages):
        doc = json.loads(m.value)
        if i % 10 == 0:
            doc["occurred_at"], retyped = m.timestamp_ms, retyped + 1
            m = dataclasses.replace(m, value=json.dumps(doc).encode(), event_id=None,
                                    expected_reason="wrong_type:occurred_at")
        elif i % 7 == 0:
            doc["campaign"], added = "spring", added + 1
            m = dataclasses.replace(m, value=json.dumps(doc).encode())
        out.append(m)
    return out, added, retyped


def test_added_and_retyped_fields_show_in_manifest_ledger_and_validation_results(stack, lake, warehouse_conn):
    bootstrap = f"127.0.0.1:{stack.state['kafka']['port']}"
    topic = f"tally.activity_{uuid.uuid4().hex[:6]}"
    messages, added, retyped = _drifted(generate_events(
        EventScale(days=1, events_per_day=400, malformed_rate=0.0), seed=9, as_of=AS_OF))
    ensure_topic(bootstrap, topic)
    assert send(bootstrap, topic, messages) == len(messages)

    report = land_events(lake, bootstrap, topic, batch_size=150, **FAST)
    assert report["messages"] == len(messages) and report["quarantined"] == retyped  # quarantined as before
    assert report["reasons"] == {"wrong_type:occurred_at": retyped}
    assert report["schema_drift"]["events"] == {"added": {"campaign": added}, "removed": {},
                                                "retyped": {"occurred_at": retyped}}

    dataset = layout.ledger_dataset(topic)
    by_ds = {ds: lake.read_manifest(layout.dataset_path(topic), ds)["schema_drift"] for ds in report["ds"]}
    total = {kind: Counter() for kind in ("added", "removed", "retyped")}
    for drift in by_ds.values():
        for kind, counts in drift["events"].items():
            total[kind].update(counts)
    assert total == report["schema_drift"]["events"]  # the ds manifests sum to the run's
    ds = max(by_ds, key=lambda d: by_ds[d]["events"]["retyped"].get("occurred_at", 0))
    assert by_ds[ds]["added"] == ["campaign"] and by_ds[ds]["added_types"] == {"campaign": "string"}
    assert by_ds[ds]["retyped"] == {"occurred_at": {"landed": "string", "now": "integer"}}

    with psycopg.connect(warehouse_conn.conninfo(), autocommit=True) as conn:
        record_ledger(conn, lake, report)  # drift is recorded, not raised
        (row,) = [e for e in ledger.entries(conn, ds) if e.dataset == dataset]
        assert row.details["schema_drift"] == by_ds[ds]
        (gate,) = [g for g in validation_log.latest(conn, ds) if g["dataset"] == dataset]
    assert gate["hop"] == "raw" and gate["suite"] == f"schema.{dataset}" and not gate["success"]
    assert "source_field_type_unchanged" in gate["summary"] and "occurred_at" in gate["summary"]
    assert gate["warnings"] == 1 and "campaign" in gate["warning_summary"]
