"""`tally land-days` (the local rig): days of change lived one at a time after the seeded history,
each landed as the daily run would have on the day, so the lake holds every day as it was: the
live records the raw zone implies for each ds equal the generator's world on that day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tally.cli import app
from tally.gates.curated import live_records
from tally.lake import Lake
from tally_local import generator
from tally_local.evolve import world_on
from tally_local.stack.manager import Stack

pytestmark = pytest.mark.integration

AS_OF = "2026-11-25"  # the seeded history ends here; its last day (11-24) is landed first


def test_land_days_lands_each_day_as_it_was(stack, tmp_path, warehouse_conn, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))

    def isolated(self, run_id=None):  # the session stack's services, a lake and warehouse of our own
        res = self.profile().resources(run_id)
        res.lake, res.warehouse = lake, warehouse_conn
        return res

    monkeypatch.setattr(Stack, "resources", isolated)
    runner = CliRunner()
    seeded = runner.invoke(app, ["seed", "--as-of", AS_OF, "--accounts", "20", "--opportunities", "120",
                                 "--users", "5", "--days", "6"])
    assert seeded.exit_code == 0, seeded.output
    first = runner.invoke(app, ["land-days", "--count", "3"])
    assert first.exit_code == 0, first.output
    assert "tally backfill --start 2026-11-24 --end 2026-11-26" in first.output
    more = runner.invoke(app, ["land-days", "--count", "1"])  # goes on from the last landed day
    assert more.exit_code == 0 and "--start 2026-11-27 --end 2026-11-27" in more.output, more.output

    base = generator.generate(generator.Scale(accounts=20, opportunities=120, users=5, days=6), seed=7,
                              as_of=datetime(2026, 11, 25, tzinfo=UTC))
    days = [(date(2026, 11, 24) + timedelta(days=k)).isoformat() for k in range(4)]
    for k, ds in enumerate(days):
        truth = world_on(base, days[1:k + 1])
        want = {o["Id"]: o["StageName"] for o in truth.salesforce["Opportunity"] if not o["IsDeleted"]}
        got = {key: r["StageName"] for key, r in live_records(lake, "salesforce.Opportunity", ds, ("StageName",)).items()}
        assert got == want, ds
        orders = {o["order_id"] for o in truth.erp["sales_orders"]}
        assert set(live_records(lake, "erp.sales_orders", ds)) == orders, ds

    late = runner.invoke(app, ["land-days", "--count", "60"])  # days that have not ended: refused, one line
    assert late.exit_code == 2 and "has not ended yet" in late.output, late.output
