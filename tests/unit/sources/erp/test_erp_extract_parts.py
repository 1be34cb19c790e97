"""ERP extraction parts without a database: typing and quarantine, delete detection, options."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from tally import catalog
from tally.catalog import Field
from tally.lake import Lake, Manifest, PartitionWriter
from tally.lake.checksum import KeyChecksum, checksum, key_hash
from tally.sources.erp.convert import Converter, cast_tolerant, caster
from tally.sources.erp.deletes import landed_keys, missing_keys
from tally.sources.erp.extract import ErpOptions, raw_schema
from tally_local import generator

F = Field


def text_batch(**columns: list) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(v, pa.string()) for v in columns.values()], names=list(columns))


def test_types_are_exact_and_timestamps_utc():
    fields = (F("id", "int", False), F("amount", "decimal"), F("at", "datetime"), F("on", "date"), F("ok", "bool"),
              F("note", "string"))
    out = Converter(fields).convert(text_batch(
        id=["1", "2", "3"], amount=["12.34", " 0.10 ", None], at=["2026-04-30 12:00:00.5+02", "2026-04-30 01:02:03+00", None],
        on=["2026-04-30", None, "2026-01-01"], ok=["t", "FALSE", "1"], note=["a, \"b\"", "", None]))
    assert out.bad is None
    rows = out.good.to_pylist()
    assert rows[0]["amount"] == Decimal("12.34") and rows[1]["amount"] == Decimal("0.10")
    assert out.good.schema.field("amount").type == pa.decimal128(38, 9)
    assert rows[0]["at"] == datetime(2026, 4, 30, 10, 0, 0, 500000, tzinfo=UTC)
    assert [r["ok"] for r in rows] == [True, False, True]
    assert [r["note"] for r in rows] == ['a, "b"', "", None]  # text stays text; empty is not null


def test_naive_timestamps_are_read_in_the_source_time_zone():
    fields = (F("at", "datetime"),)
    utc = Converter(fields).convert(text_batch(at=["2026-04-30 12:00:00"])).good.column(0)[0].as_py()
    berlin = Converter(fields, "Europe/Berlin").convert(text_batch(at=["2026-04-30 12:00:00"])).good.column(0)[0].as_py()
    assert utc == datetime(2026, 4, 30, 12, tzinfo=UTC)
    assert berlin == datetime(2026, 4, 30, 10, tzinfo=UTC)  # CEST is UTC+2


def test_bad_rows_are_quarantined_as_text_with_reasons():
    fields = (F("payment_id", "int", False), F("order_id", "int", False), F("amount", "decimal", False),
              F("day", "date"))
    text = text_batch(payment_id=["1", "2", "3", "4", None, "6"], order_id=["9", None, "9", "9", "9", "9"],
                      amount=["1.00", "2.00", "1.234,50", "12O.00", "5", "n/a"],
                      day=["2026-01-01", "2026-01-01", "2026-01-01", "0000-00-00", "2026-01-01", "2026-01-01"])
    out = Converter(fields).convert(text)
    assert out.good.column("payment_id").to_pylist() == [1]
    bad = out.bad.to_pylist()
    assert [r["payment_id"] for r in bad] == ["2", "3", "4", None, "6"]
    assert [r["reason"] for r in bad] == [
        "null order_id", "amount: not a decimal", "amount: not a decimal; day: not a date", "null payment_id",
        "amount: not a decimal"]
    assert bad[1]["amount"] == "1.234,50"  # the source's text, as it was
    assert out.keep.to_pylist() == [True, False, False, False, False, False]


def test_bisection_finds_every_bad_value():
    values = [str(i) for i in range(1000)]
    for i in (0, 17, 500, 999):
        values[i] = f"x{i}"
    typed, bad = cast_tolerant(pa.array(values), caster(F("n", "int")), pa.int64())
    assert np.flatnonzero(bad).tolist() == [0, 17, 500, 999]
    assert typed.null_count == 4 and typed[1].as_py() == 1 and len(typed) == 1000


def _land(lake: Lake, ds: str, keys: list[int], deleted: list[int] = ()) -> None:
    dataset = catalog.ERP["order_lines"]
    schema = raw_schema(dataset)
    rows = [{f.name: None for f in schema} | {"line_id": k, "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
                                               "_deleted": k in deleted} for k in [*keys, *deleted]]
    writer = PartitionWriter(lake, dataset.lake_path, ds)
    writer.commit(Manifest(files=writer.write(schema, [pa.RecordBatch.from_pylist(rows, schema)])))


def test_landed_keys_drop_tombstones_and_keep_revived_keys(lake):
    d = catalog.ERP["order_lines"]
    _land(lake, "2026-01-01", [5, 1, 2, 3])
    _land(lake, "2026-01-02", [3, 4], deleted=[2, 5])
    _land(lake, "2026-01-03", [5])  # key 5 came back
    alive = landed_keys(lake, d, lake.committed(d.lake_path))
    assert alive.tolist() == [1, 3, 4, 5]
    assert landed_keys(lake, d, ["2026-01-01", "2026-01-02"]).tolist() == [1, 3, 4]


def test_missing_keys_streams_the_source_in_any_order():
    landed = np.array([1, 3, 4, 5, 10], dtype=np.int64)
    batches = iter([np.array([10, 4]), np.array([99, 1]), np.array([], dtype=np.int64)])
    gone, seen = missing_keys(landed, batches)
    assert gone.tolist() == [3, 5] and seen == 4
    gone, _ = missing_keys(np.array([], dtype=np.int64), iter([np.array([1])]))
    assert gone.tolist() == []


def test_key_hash_sum_equals_the_checksum():
    keys = list(range(1000, 1100))
    acc = KeyChecksum()
    signed = sum(int(np.uint64(key_hash(k)).view(np.int64)) for k in keys[:50])  # Postgres sums signed bigints
    acc.add_sum(signed, 50)
    acc.update(keys[50:] + [5, 6])
    acc.remove(["5", 6])  # quarantined keys come off as the source's text or typed
    assert acc.hexdigest() == checksum(keys) and acc.count == 100


def _csv(rows: list[list[str | None]]) -> bytes:
    """Rows rendered as Postgres CSV: NULL unquoted empty, text quoted when it must be."""
    def cell(v: str | None) -> str:
        if v is None:
            return ""
        return '"' + v.replace('"', '""') + '"' if (v == "" or any(c in v for c in ',"\n')) else v
    return "".join(",".join(cell(v) for v in r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("rows", [
    [["1", "12.34", "2026-04-30 12:00:00.5+02", "2026-04-30", "t", "plain"],
     ["2", None, None, None, None, None],
     [None, "1.00", "2026-04-30 01:02:03+00", "2026-01-01", "f", "no key"],  # quarantined: null key
     ["4", "0.10", "2026-04-30 01:02:03.000001+00", "2026-01-01", "TRUE", ""]],
    [["1", "1.00", "2026-04-30 01:02:03+00", "2026-01-01", "f", 'a, "quoted"\nline'],
     [None, "2.00", "2026-04-30 01:02:03+00", "2026-01-01", "f", "x"]],  # quotes: bad rows re-read whole
    [["1", "1.234,50", "2026-04-30 01:02:03+00", "2026-01-01", "f", "x"]],  # Arrow refuses: text path
    [["1", "1.00", "2026-04-30 12:00:00", "2026-01-01", "f", "x"]],  # naive timestamp: text path
])
def test_csv_fast_path_lands_what_the_text_path_lands(rows):
    from tally.sources.erp.dialect import parse_csv

    fields = (F("id", "int", False), F("amount", "decimal"), F("at", "datetime"), F("on", "date"), F("ok", "bool"),
              F("note", "string"))
    names = [f.name for f in fields]
    blob = _csv(rows)
    fast = Converter(fields).convert_csv(blob, names)
    slow = Converter(fields).convert(parse_csv(blob, names))
    assert fast.good.to_pylist() == slow.good.to_pylist()
    assert (fast.bad.to_pylist() if fast.bad else None) == (slow.bad.to_pylist() if slow.bad else None)
    assert len(fast.good) + (len(fast.bad) if fast.bad else 0) == len(rows)


def test_csv_fast_path_is_given_up_after_refusals():
    fields = (F("id", "int", False), F("at", "datetime"))
    conv = Converter(fields)
    for _ in range(Converter.FAST_PATH_REFUSALS + 1):  # naive timestamps: Arrow refuses every block
        out = conv.convert_csv(b"1,2026-04-30 12:00:00\n", ["id", "at"])
        assert out.good.column("at")[0].as_py() == datetime(2026, 4, 30, 12, tzinfo=UTC)
    assert conv._refusals == Converter.FAST_PATH_REFUSALS


def test_options_from_env_and_full_reload():
    opts = ErpOptions.from_env({"TALLY_ERP_OVERLAP_SECONDS": "60", "TALLY_ERP_FULL_RELOAD": "invoices, ",
                                    "TALLY_ERP_BATCH_SIZE": "1000", "TALLY_ERP_SOURCE_KEY_HASH": "false"})
    assert opts.overlap.total_seconds() == 60 and opts.batch_size == 1000 and not opts.source_key_hash
    assert opts.reloads_fully(catalog.ERP["invoices"]) and opts.reloads_fully(catalog.ERP["products"])
    assert not opts.reloads_fully(catalog.ERP["order_lines"])
    assert ErpOptions.from_env({}).overlap.total_seconds() == 300


def test_raw_schema_marks_tombstone_columns():
    schema = raw_schema(catalog.ERP["sales_orders"])
    assert schema.names[-1] == "_deleted" and not schema.field("_deleted").nullable
    assert not schema.field("order_id").nullable and not schema.field("updated_at").nullable
    assert schema.field("customer_id").nullable  # tombstones carry the key only
    assert all(d.deleted_flag == "_deleted" for d in catalog.ERP.values())


def test_generator_erp_is_consistent_and_dirty_like_a_legacy_erp():
    data = generator.generate(generator.Scale(accounts=50, opportunities=50, users=4, days=10), seed=9,
                              as_of=datetime(2026, 3, 1, tzinfo=UTC))
    lines = data.erp_rows("order_lines")
    for line in lines:
        assert line["unit_price"] * line["quantity"] - line["discount_amount"] == line["line_amount"]
    by_order: dict[int, Decimal] = {}
    for line in data.erp["order_lines"]:
        by_order[line["order_id"]] = by_order.get(line["order_id"], Decimal(0)) + line["line_amount"]
    orphaned = {b.row["line_id"] for b in data.erp_bad["order_lines"]}
    assert orphaned and all(b.row["order_id"] is None for b in data.erp_bad["order_lines"])
    complete = [o for o in data.erp["sales_orders"] if o["order_id"] in by_order]
    assert sum(by_order[o["order_id"]] == o["total_amount"] for o in complete) >= len(complete) - len(orphaned)
    assert data.erp_bad["payments"] and all(b.reason == "amount: not a decimal" for b in data.erp_bad["payments"])
    for p in data.erp["payments"]:
        Decimal(p["amount"].strip())  # every landable amount parses
    assert {p["product_id"] for p in data.erp["products"]} >= {line["product_id"] for line in lines}
    refs = [c["sf_account_ref"] for c in data.erp["customers"]]
    assert any(r is None for r in refs) and any(r and len(r) == 15 for r in refs)


@pytest.mark.parametrize("name", list(catalog.ERP))
def test_every_erp_table_has_a_raw_suite(name):
    from tally.quality import suites

    suite = suites.load_suite_dict(f"raw.erp.{name}")
    assert suites.suite_parameters(suite) == ["source_count"]
    assert catalog.ERP[name].key in suites.suite_columns(suite)
