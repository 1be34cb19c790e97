"""Unit tests of the small core modules: IDs, names, checksum, generator, lake, ledger."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from tally import catalog, generator, sfid
from tally.checksum import KeyChecksum, checksum
from tally.lake import MANIFEST, arrow_schema
from tally.landing import batches_from_rows, interval_start, land
from tally.ledger import Entry, first_divergence


def test_sfid_normalises_15_and_mangled_18_char_ids():
    assert sfid.to18("001A0000006Vm9r") == "001A0000006Vm9rIAC"  # Salesforce's documented example
    full = sfid.make("006", 987654)
    assert len(full) == 18
    assert sfid.to18(full[:15]) == full
    assert sfid.to18(full.lower()) == full
    assert sfid.to18(full.upper()[:15] + full[15:]) == full  # the suffix encodes the case
    assert sfid.to18(None) is None and sfid.to18("  ") is None
    with pytest.raises(ValueError, match="not a Salesforce ID"):
        sfid.to18("123")


@pytest.mark.parametrize("name,expected", [
    ("SystemModstamp", "system_modstamp"), ("Id", "id"), ("AccountId", "account_id"),
    ("Region__c", "region__c"), ("IsWon", "is_won"), ("customer_id", "customer_id"),
    ("BillingCountry", "billing_country"),
])
def test_snake_case(name, expected):
    assert catalog.snake_case(name) == expected


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


def test_generator_is_deterministic_and_realistic():
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    a = generator.generate(generator.Scale(accounts=30, opportunities=120, users=5, days=5), seed=3, as_of=as_of)
    b = generator.generate(generator.Scale(accounts=30, opportunities=120, users=5, days=5), seed=3, as_of=as_of)
    c = generator.generate(generator.Scale(accounts=30, opportunities=120, users=5, days=5), seed=4, as_of=as_of)
    assert a.salesforce == b.salesforce and a.erp == b.erp
    assert a.salesforce != c.salesforce
    opps = a.salesforce["Opportunity"]
    assert all(o["SystemModstamp"] < as_of for o in opps)
    assert all(o["IsWon"] <= o["IsClosed"] for o in opps)
    assert len({o["Id"] for o in opps}) == len(opps)
    refs = [c["sf_account_ref"] for c in a.erp["customers"]]
    assert any(r is None for r in refs) or any(r and len(r) == 15 for r in refs)


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


def test_first_divergence_names_the_hop():
    def e(hop, n, c="a"):
        return Entry("2026-01-01", "x", hop, n, c, {})

    assert first_divergence({"source": e("source", 3, None), "raw": e("raw", 3), "warehouse": e("warehouse", 3)}) is None
    assert first_divergence({"raw": e("raw", 3), "warehouse": e("warehouse", 2)})[:2] == ("raw", "warehouse")
    assert first_divergence({"raw": e("raw", 3, "a"), "warehouse": e("warehouse", 3, "b")})[2].startswith("key checksum")


def test_arrow_schema_keeps_money_exact():
    schema = arrow_schema(catalog.SALESFORCE["Opportunity"])
    assert pa.types.is_decimal(schema.field("Amount").type)
    assert schema.field("SystemModstamp").type == pa.timestamp("us", tz="UTC")
