"""tally.catalog and tally.sfid: names and ids every part agrees on."""

from __future__ import annotations

import pytest

from tally import catalog, sfid


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
