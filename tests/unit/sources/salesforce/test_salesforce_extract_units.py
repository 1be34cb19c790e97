"""Salesforce extraction logic that needs no server: typing, drift, backoff, options, atomic replace."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from tally import catalog, sfid
from tally.catalog import Field
from tally.lake import arrow_schema
from tally.lake.schema import batches_from_rows
from tally.lake.writer import land
from tally.sources.salesforce.client import RetryPolicy
from tally.sources.salesforce.extract import (
    SalesforceOptions,
    compare_schema,
    convert,
    logical_type,
    parse_datetime,
    where_clause,
)

OPP = catalog.SALESFORCE["Opportunity"]


def test_window_is_tie_safe_on_both_edges():
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    assert where_clause(OPP, start, end) == "SystemModstamp >= 2026-01-01T00:00:00Z AND SystemModstamp < 2026-01-02T00:00:00Z"
    assert where_clause(OPP, None, end) == "SystemModstamp < 2026-01-02T00:00:00Z"


def test_rest_and_bulk_records_convert_to_the_same_typed_row():
    account = sfid.make("001", 42)
    rest = {"Id": sfid.make("006", 1)[:15], "AccountId": account, "Amount": 1234.5, "Probability": 20,
            "CloseDate": "2026-02-01", "IsWon": False, "IsDeleted": True, "Name": "x",
            "SystemModstamp": "2026-01-01T10:00:00.000+0000", "CurrencyIsoCode": "USD"}
    bulk = {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in rest.items()}
    bulk["SystemModstamp"] = "2026-01-01T10:00:00.000Z"
    a, b = convert(OPP.fields, rest), convert(OPP.fields, bulk)
    assert a == b
    assert a["Id"] == sfid.make("006", 1) and a["Amount"] == Decimal("1234.5") and a["IsDeleted"] is True
    assert a["SystemModstamp"] == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert a["OwnerId"] is None  # absent/empty -> null, never ""


def test_unreadable_fields_land_as_null():
    row = convert(OPP.fields, {"Id": sfid.make("006", 1), "Amount": "oops", "SystemModstamp": None},
                  unreadable=frozenset({"Amount"}))
    assert row["Amount"] is None


def test_parse_datetime_normalises_offsets_to_utc():
    assert parse_datetime("2026-01-01T12:00:00.000+0200") == datetime(2026, 1, 1, 10, tzinfo=UTC)


def _describe(**fields: str) -> dict:
    return {"fields": [{"name": n, "type": t} for n, t in fields.items()]}


def test_schema_drift_added_removed_retyped():
    landed = (Field("Id", "id"), Field("Amount", "decimal"), Field("Name", "string"), Field("Old__c", "string"))
    previous = {"Id": "id", "Amount": "decimal", "Name": "string", "Old__c": "string", "Other": "string"}
    now = _describe(Id="id", Amount="string", Name="textarea", Other="string", New__c="double")
    drift = compare_schema(landed, now, previous)
    assert drift.added == {"New__c": "double"}
    assert drift.removed == ["Old__c"]
    assert drift.retyped == {"Amount": ("decimal", "string")}  # textarea is still text: no drift
    assert drift.breaking


def test_first_run_reports_no_added_fields():
    landed = (Field("Id", "id"),)
    drift = compare_schema(landed, _describe(Id="id", Anything="string"), None)
    assert not drift.added and not drift.breaking


@pytest.mark.parametrize("sf_type,logical", [("reference", "id"), ("currency", "decimal"), ("percent", "double"),
                                             ("picklist", "string"), ("boolean", "bool"), ("datetime", "datetime")])
def test_describe_types_map_to_logical_types(sf_type, logical):
    assert logical_type(sf_type) == logical


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    rng = random.Random(1)
    for attempt in range(1, 10):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        cap = min(10.0, 2 ** (attempt - 1))
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spans the range


def test_options_from_environment():
    opts = SalesforceOptions.from_env({"TALLY_SF_OVERLAP_SECONDS": "600", "TALLY_SF_FORCE_BULK": "Task, Opportunity",
                                       "TALLY_SF_BULK_THRESHOLD": "10"})
    assert opts.overlap == timedelta(minutes=10) and opts.force_bulk == {"Task", "Opportunity"}
    assert opts.bulk_threshold == 10


def test_a_failed_rewrite_keeps_the_previous_version_committed(lake):
    users = catalog.SALESFORCE["User"]
    schema = arrow_schema(users)
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"Id": sfid.make("005", i), "Name": "n", "Email": None, "IsActive": True, "Region__c": "EMEA",
             "CreatedDate": ts, "SystemModstamp": ts} for i in range(30)]
    land(lake, users, "2026-01-01", batches_from_rows(rows, schema), source_count=30, watermark={}, mode="full")

    def failing():
        yield pa.RecordBatch.from_pylist(rows[:10], schema=schema)
        raise ConnectionError("connection reset mid-extract")

    with pytest.raises(ConnectionError):
        land(lake, users, "2026-01-01", failing(), source_count=30, watermark={}, mode="full")
    assert lake.read_table(users.lake_path, "2026-01-01").num_rows == 30  # old version intact
    land(lake, users, "2026-01-01", batches_from_rows(rows[:5], schema), source_count=5, watermark={}, mode="full")
    assert lake.read_table(users.lake_path, "2026-01-01").num_rows == 5
    part = lake.path(lake.partition(users.lake_path, "2026-01-01"))
    import os

    assert len([f for f in os.listdir(part) if f.endswith(".parquet")]) == 1  # orphans swept at commit
