"""The one schema-drift comparison every interval source uses (tally.sources.drift)."""

from __future__ import annotations

from tally.sources.drift import compare


def test_erp_style_types_are_compared_with_the_previous_ds():
    landed = {"order_id": None, "total_amount": None, "note": None}  # catalog fields: no fixed type
    previous = {"order_id": "bigint", "total_amount": "numeric", "note": "text"}
    now = {"order_id": "bigint", "total_amount": "text", "region": "text"}
    drift = compare(landed, now, previous)
    assert drift.added == {"region": "text"} and drift.removed == ["note"]
    assert drift.retyped == {"total_amount": ("numeric", "text")} and drift.breaking
    assert drift.to_dict() == {"added": ["region"], "removed": ["note"],
                               "retyped": {"total_amount": {"landed": "numeric", "now": "text"}}}


def test_a_first_ds_finds_only_removed_columns():
    drift = compare({"a": None, "b": None}, {"a": "text", "extra": "int"}, None)
    assert drift.removed == ["b"] and not drift.added and not drift.retyped
