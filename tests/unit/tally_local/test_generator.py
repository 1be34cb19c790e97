"""The synthetic data generator of the local rig."""

from __future__ import annotations

from datetime import UTC, datetime

from tally_local import generator


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
