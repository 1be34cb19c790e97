"""The ledger accounts for every row the ERP counted: source count, landed, quarantined and
tombstones, through the real extract stage on an embedded Postgres ERP (issue 16, item 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tally import ledger
from tally.core.dates import ds_interval
from tally.core.resources import Resources
from tally.stages.extract import extract
from tally_local import generator
from tally_local.seed import seed_erp

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
DS1, DS2 = "2026-04-29", "2026-04-30"
SCALE = generator.Scale(accounts=30, opportunities=60, users=4, days=6)


def test_a_ds_with_quarantined_rows_and_tombstones_is_accounted_in_four_columns(lake, warehouse_conn,
                                                                                new_database):
    erp = new_database("erp")
    seed_erp(erp, generator.generate(SCALE, seed=31, as_of=AS_OF))
    res = Resources(lake=lake, warehouse=warehouse_conn, erp=erp, run_id="run-1")
    extract(res, "erp.order_lines", DS1, *ds_interval(DS1))
    lines = sorted(r["line_id"] for r in lake.read_table("raw/erp/order_lines", DS1).to_pylist())
    start2, _ = ds_interval(DS2)
    with psycopg.connect(erp.conninfo(), autocommit=True) as c:  # a hard delete, and two lines gone bad
        c.execute('DELETE FROM "order_lines" WHERE "line_id" = %s', (lines[0],))
        for spoiled in lines[1:3]:
            c.execute('UPDATE "order_lines" SET "order_id" = NULL, "updated_at" = %s WHERE "line_id" = %s',
                      (start2 + timedelta(hours=1), spoiled))
    out = extract(res, "erp.order_lines", DS2, *ds_interval(DS2))
    assert out["tombstones"] == 1 and out["quarantined"] >= 2

    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        acc = ledger.accounting_of(conn, DS2)["erp.order_lines"]
        source_hop = ledger.flow(conn, DS2)["erp.order_lines"]["source"].row_count
    assert acc == ledger.Accounting(source_count=out["source_count"], landed=out["row_count"] - 1,
                                    quarantined=out["quarantined"], tombstones=1)
    assert acc.balanced  # every row the source counted either landed or was quarantined
    assert source_hop == out["row_count"] != acc.source_count  # the hop compares with raw; the count is the source's
