"""Which ds a backfill rebuilds, from where, and what it refuses (tally.backfill.plan)."""

from __future__ import annotations

from datetime import date

import pytest

from tally import contract
from tally.backfill import plan

TODAY = date(2026, 12, 8)
LANDED_DAYS = plan.days("2026-12-02", "2026-12-06")


def every_dataset(days: list[str]) -> dict[str, set[str]]:
    return {d: set(days) for d in contract.RAW_DATASETS}


def test_days_and_contiguous_runs():
    assert plan.days("2026-11-29", "2026-12-02") == ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"]
    assert plan.days("2026-12-02", "2026-12-02") == ["2026-12-02"]
    # unsorted, duplicated, across a month end: one backfill per run of consecutive days
    assert plan.contiguous(["2026-12-05", "2026-11-30", "2026-12-01", "2026-12-03", "2026-12-01", "2026-12-04"]) == [
        ("2026-11-30", "2026-12-01"), ("2026-12-03", "2026-12-05")]
    assert plan.contiguous([]) == []
    assert plan.spans(["2026-12-01", "2026-12-02", "2026-12-04"]) == "2026-12-01 … 2026-12-02, 2026-12-04"
    assert plan.spans(["2026-12-01", "2026-12-03", "2026-12-05", "2026-12-07"], limit=2).endswith("and 2 more")


def test_a_fully_landed_day_is_rebuilt_from_the_lake():
    d = plan.source_for("2026-12-03", every_dataset(LANDED_DAYS), TODAY)
    assert (d.source, d.refused, d.reason) == ("lake", False, "")


def test_the_daily_runs_own_ds_is_extracted_when_not_landed_and_read_from_the_lake_when_it_is():
    assert plan.source_for("2026-12-07", every_dataset(LANDED_DAYS), TODAY).source == "extract"
    partly = every_dataset(LANDED_DAYS) | {"erp.payments": {"2026-12-07"}}
    assert plan.source_for("2026-12-07", partly, TODAY).source == "extract"  # exact as the daily run is
    assert plan.source_for("2026-12-07", every_dataset(["2026-12-07"]), TODAY).source == "lake"


def test_the_extract_frontier_is_today_minus_one_and_today_has_not_ended():
    empty: dict[str, set[str]] = {}
    assert plan.source_for("2026-12-06", empty, TODAY).refused  # a day older than the frontier
    assert plan.source_for("2026-12-07", empty, TODAY).source == "extract"
    for ds in ("2026-12-08", "2026-12-09"):
        d = plan.source_for(ds, every_dataset([ds]), TODAY)  # even landed: the day is not over
        assert d.refused and "has not ended" in d.reason and ds in d.reason


def test_a_day_with_nothing_landed_is_refused_saying_why_and_what_to_do():
    d = plan.source_for("2026-11-25", every_dataset(LANDED_DAYS), TODAY)
    assert d.refused and d.source is None
    assert d.reason.startswith("ds=2026-11-25 cannot be built exactly: salesforce.Opportunity and 12 other raw "
                               "datasets hold only current state")
    assert "the lake has no raw partition for that day (the lake holds 2026-12-02 … 2026-12-06)" in d.reason
    assert "records changed since would be missing" in d.reason
    assert "Backfill from 2026-12-02, or land the day from a source snapshot (docs/backfill.md)" in d.reason


def test_with_an_empty_lake_the_advice_is_the_extract_frontier():
    d = plan.source_for("2026-11-25", {}, TODAY)
    assert "the lake holds no complete day" in d.reason and "Backfill from 2026-12-07" in d.reason


def test_a_partly_landed_day_is_refused_naming_the_missing_datasets():
    landed = every_dataset(LANDED_DAYS)
    landed["salesforce.Opportunity"].discard("2026-12-04")
    landed["erp.payments"].discard("2026-12-04")
    d = plan.source_for("2026-12-04", landed, TODAY)
    assert d.refused
    assert "raw partition for only 11 of 13 raw datasets; missing: salesforce.Opportunity, erp.payments." in d.reason
    assert "backfill from 2026-12-05" in d.reason
    # the gap also splits the lake's complete days in the other refusals' advice
    other = plan.source_for("2026-11-30", landed, TODAY)
    assert "(the lake holds 2026-12-02 … 2026-12-03, 2026-12-05 … 2026-12-06)" in other.reason


def test_a_dataset_absent_from_the_listing_counts_as_not_landed():
    landed = every_dataset(LANDED_DAYS)
    del landed["salesforce.DatedConversionRate"]  # history objects are not special-cased (see the module doc)
    d = plan.source_for("2026-12-03", landed, TODAY)
    assert d.refused and "missing: salesforce.DatedConversionRate." in d.reason


def test_plan_range_and_refusals():
    decisions = plan.plan_range(plan.days("2026-12-05", "2026-12-09"), every_dataset(LANDED_DAYS), TODAY)
    assert [(d.ds, d.source) for d in decisions] == [
        ("2026-12-05", "lake"), ("2026-12-06", "lake"), ("2026-12-07", "extract"), ("2026-12-08", None),
        ("2026-12-09", None)]
    assert [d.ds for d in plan.refusals(decisions)] == ["2026-12-08", "2026-12-09"]


def test_landed_lists_committed_partitions_only(lake):
    from tally import catalog
    from tally.lake.writer import land

    dataset = catalog.get("erp.payments")
    land(lake, dataset, "2026-12-03", iter(()), source_count=0, watermark={}, mode="incremental")
    found = plan.landed(lake)
    assert set(found) == set(contract.RAW_DATASETS)
    assert found["erp.payments"] == {"2026-12-03"} and found["erp.customers"] == set()
    assert plan.complete_days(found) == []


@pytest.mark.parametrize("ds", ["2026-12-02", "2026-12-06"])
def test_range_edges_are_included(ds):
    assert ds in plan.days("2026-12-02", "2026-12-06")
