"""The lake's writer and schema: a raw partition landed, replaced, empty or incremental; the checksum."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from tally import catalog, sfid
from tally.lake import MANIFEST, arrow_schema
from tally.lake.checksum import KeyChecksum, checksum
from tally.lake.schema import batches_from_rows
from tally.lake.writer import interval_start, land


def test_checksum_is_order_independent_and_sees_duplicates_and_losses():
    keys = [f"k{i}" for i in range(100)]
    assert checksum(keys) == checksum(reversed(keys))
    assert checksum(keys) != checksum(keys[:-1])
    assert checksum(keys) != checksum([*keys, "k1"])
    acc = KeyChecksum()
    acc.update(keys[:50])
    acc.update(keys[50:])
    assert acc.hexdigest() == checksum(keys) and acc.count == 100
    assert len(checksum([])) == 16


def _opportunity_rows(n: int) -> list[dict]:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    return [{"Id": sfid.make("006", i), "Name": f"o{i}", "AccountId": None, "OwnerId": None, "StageName": "Prospecting",
             "Amount": Decimal("10.50"), "Probability": 10.0, "CloseDate": ts.date(), "IsClosed": False,
             "IsWon": False, "IsDeleted": False, "CreatedDate": ts, "SystemModstamp": ts} for i in range(n)]


def test_land_writes_files_then_manifest_and_replaces_on_rerun(lake):
    ds_ = catalog.SALESFORCE["Opportunity"]
    rows = _opportunity_rows(25)
    schema = arrow_schema(ds_)
    m = land(lake, ds_, "2026-01-01", batches_from_rows(rows, schema, batch_size=10), source_count=25,
             watermark={"column": "SystemModstamp"}, mode="full")
    assert m["row_count"] == 25 and m["source_count"] == 25
    assert m["key_checksum"] == checksum(r["Id"] for r in rows)
    assert lake.committed(ds_.lake_path) == ["2026-01-01"]
    assert lake.read_table(ds_.lake_path, "2026-01-01").num_rows == 25
    # Re-running the ds replaces it: no duplicates.
    land(lake, ds_, "2026-01-01", batches_from_rows(rows[:5], schema), source_count=5, watermark={}, mode="full")
    assert lake.read_table(ds_.lake_path, "2026-01-01").num_rows == 5
    # An uncommitted ds (no manifest) does not exist for readers.
    os.remove(lake.path(ds_.lake_path, "ds=2026-01-01", MANIFEST))
    assert lake.committed(ds_.lake_path) == []
    with pytest.raises(FileNotFoundError, match="not committed"):
        lake.files(ds_.lake_path, "2026-01-01")


def test_empty_interval_lands_a_typed_empty_partition(lake):
    ds_ = catalog.ERP["customers"]
    m = land(lake, ds_, "2026-01-02", iter(()), source_count=0, watermark={}, mode="incremental")
    assert m["row_count"] == 0
    assert lake.schema(ds_.lake_path, "2026-01-02") == arrow_schema(ds_)


def test_first_run_is_full_then_incremental(lake):
    ds_ = catalog.ERP["customers"]
    start = datetime(2026, 1, 2, tzinfo=UTC)
    assert interval_start(lake, ds_, "2026-01-02", start) == (None, "full")
    land(lake, ds_, "2026-01-01", iter(()), source_count=0, watermark={}, mode="full")
    assert interval_start(lake, ds_, "2026-01-02", start) == (start, "incremental")
    assert interval_start(lake, ds_, "2026-01-01", start) == (None, "full")  # re-running the first ds


def test_arrow_schema_keeps_money_exact():
    schema = arrow_schema(catalog.SALESFORCE["Opportunity"])
    assert pa.types.is_decimal(schema.field("Amount").type)
    assert schema.field("SystemModstamp").type == pa.timestamp("us", tz="UTC")
