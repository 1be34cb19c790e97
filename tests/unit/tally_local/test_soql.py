"""The simulator's SOQL subset: parsing, validation, translation to SQLite, and its semantics."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tally_local.sfsim.soql import SoqlError, format_datetime, parse, parse_datetime, translate
from tally_local.sfsim.store import SalesforceStore

# --- translation ------------------------------------------------------------------------------


def test_select_is_parameterised_and_hides_deleted_rows():
    sql, params = translate(r"SELECT Id, Name FROM Account WHERE Name = 'O\'Brien'")
    assert sql == 'SELECT "Id", "Name" FROM "Account" WHERE ("Name" = ?) AND IFNULL("IsDeleted", 0) = 0'
    assert params == ["O'Brien"]


def test_query_all_keeps_deleted_rows_and_objects_without_flag_are_unfiltered():
    assert translate("SELECT Id FROM Account", include_deleted=True) == ('SELECT "Id" FROM "Account"', [])
    assert translate("SELECT Id FROM User") == ('SELECT "Id" FROM "User"', [])


def test_names_are_case_insensitive_and_normalised():
    query = parse(
        "select id, SYSTEMMODSTAMP from opportunity where isdeleted = FALSE order by closedate desc"
    )
    assert query.object_name == "Opportunity"
    assert query.fields == ("Id", "SystemModstamp")
    assert query.order_by[0].field == "CloseDate"
    assert query.params == (False,)


@pytest.mark.parametrize(
    "literal",
    [
        "2026-11-20T10:15:00Z",
        "2026-11-20T10:15:00+00:00",
        "2026-11-20T10:15:00.000+0000",
        "2026-11-20T11:15:00+01:00",
        "2026-11-20T05:15:00-0500",
    ],
)
def test_datetime_literals_are_normalised_to_the_store_format(literal):
    _, params = translate(f"SELECT Id FROM User WHERE SystemModstamp >= {literal}")
    assert params == ["2026-11-20T10:15:00.000+0000"]


def test_range_order_and_limit():
    sql, params = translate(
        "SELECT Id FROM Account WHERE SystemModstamp >= 2026-01-01T00:00:00Z "
        "AND SystemModstamp < 2026-02-01T00:00:00Z ORDER BY SystemModstamp, Id DESC NULLS FIRST LIMIT 50"
    )
    assert sql == (
        'SELECT "Id" FROM "Account" WHERE ("SystemModstamp" >= ? AND "SystemModstamp" < ?) '
        'AND IFNULL("IsDeleted", 0) = 0 ORDER BY "SystemModstamp" ASC NULLS FIRST, "Id" DESC NULLS FIRST LIMIT ?'
    )
    assert params == ["2026-01-01T00:00:00.000+0000", "2026-02-01T00:00:00.000+0000", 50]


def test_in_or_parentheses_and_literal_kinds():
    sql, params = translate(
        "SELECT Id FROM Opportunity WHERE (StageName IN ('Won', 'Lost') OR Amount > -10.5) "
        "AND CloseDate <= 2026-12-31 AND Probability != null"
    )
    assert '("StageName" IN (?, ?) OR "Amount" > ?)' in sql
    assert '"CloseDate" <= ?' in sql
    assert '"Probability" IS NOT NULL' in sql
    assert params == ["Won", "Lost", -10.5, "2026-12-31"]


def test_inequality_and_not_in_also_match_nulls_like_soql():
    sql, _ = translate("SELECT Id FROM User WHERE Region__c != 'EU' AND Email NOT IN ('a@x')")
    assert '"Region__c" IS NOT ?' in sql
    assert '("Email" IS NULL OR "Email" NOT IN (?))' in sql


def test_count():
    query = parse("SELECT COUNT() FROM Opportunity WHERE IsWon = true LIMIT 10")
    assert query.is_count and query.fields == ()
    sql, params = query.to_sql(include_deleted=False)
    assert sql.startswith('SELECT COUNT(*) FROM (SELECT 1 FROM "Opportunity" WHERE')
    assert params == [True, 10]


def test_string_escapes():
    query = parse(r"SELECT Id FROM Account WHERE Name = 'a\'b\\c\nd'")
    assert query.params == ("a'b\\c\nd",)


def test_values_never_reach_the_sql_text():
    sql, params = translate("SELECT Id FROM Account WHERE Name = 'x\\' OR 1=1; DROP TABLE Account; --'")
    assert "DROP" not in sql and "1=1" not in sql
    assert params == ["x' OR 1=1; DROP TABLE Account; --"]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("", "MALFORMED_QUERY", "A query string has to be specified"),
        ("SELECT FROM Account", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
        ("SELECT Id FRM Account", "MALFORMED_QUERY", "unexpected token: 'FRM'"),
        ("SELECT Id FROM Account LIMIT", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        ("SELECT Id FROM Account LIMIT 1.5", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Account WHERE Name = 'open", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id FROM Account WHERE Name = 'x' AND Name = 'y' OR Name = 'z'", "MALFORMED_QUERY", "'OR'"),
        ("SELECT Id FROM Account WHERE (Name = 'x'", "MALFORMED_QUERY", "<EOF>"),
        ("SELECT Id FROM Account WHERE Name LIKE 'x%'", "MALFORMED_QUERY", "'LIKE'"),
        ("SELECT Id FROM Account WHERE Name < null", "MALFORMED_QUERY", "invalid operator on null"),
        ("SELECT Id FROM Account WHERE Name = 'a\\qb'", "MALFORMED_QUERY", "Illegal character sequence"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-02-30T00:00:00Z", "MALFORMED_QUERY", "invalid"),
        ("SELECT Id FROM Account WHERE CreatedDate > 2026-01-01T00:00:00", "MALFORMED_QUERY", "unexpected"),
        ("SELECT Id FROM Account WHERE CreatedDate > LAST_N_DAYS:3", "MALFORMED_QUERY", "unexpected"),
        ("SELECT Id FROM Account GROUP BY Name", "MALFORMED_QUERY", "unexpected token: 'GROUP'"),
        ("SELECT COUNT(Id) FROM Account", "MALFORMED_QUERY", "COUNT()"),
        ("SELECT MAX(Name) FROM Account", "MALFORMED_QUERY", "not supported"),
        ("SELECT Id FROM Lead", "INVALID_TYPE", "sObject type 'Lead' is not supported"),
        ("SELECT Id, Nmae FROM Account", "INVALID_FIELD", "No such column 'Nmae' on entity 'Account'"),
        ("SELECT Id FROM Account ORDER BY Bogus", "INVALID_FIELD", "No such column 'Bogus'"),
        ("SELECT Id FROM Account WHERE Owner.Name = 'x'", "INVALID_FIELD", "No such column 'Owner.Name'"),
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2026-01-01T00:00:00Z'",
            "INVALID_FIELD",
            "type dateTime",
        ),
        ("SELECT Id FROM Account WHERE SystemModstamp > 2026-01-01", "INVALID_FIELD", "type dateTime"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 2026-01-01T00:00:00Z", "INVALID_FIELD", "type date"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD", "should be enclosed in quotes"),
        ("SELECT Id FROM Account WHERE IsDeleted = 'false'", "INVALID_FIELD", "type boolean"),
        ("SELECT Id FROM Opportunity WHERE Amount > '5'", "INVALID_FIELD", "type currency"),
    ],
)
def test_errors_look_like_salesforce(soql, code, fragment):
    with pytest.raises(SoqlError) as info:
        parse(soql)
    assert info.value.error_code == code
    assert fragment in info.value.message


def test_error_message_points_at_the_token():
    with pytest.raises(SoqlError) as info:
        parse("SELECT Id,\n  Nmae FROM Account")
    assert info.value.message.startswith(
        "\n  Nmae FROM Account\n  ^\nERROR at Row:2:Column:3\nNo such column"
    )


# --- wire formats -----------------------------------------------------------------------------


def test_datetime_format_and_parse_round_trip():
    dt = datetime(2026, 11, 20, 12, 15, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_datetime(dt) == "2026-11-20T10:15:00.123+0000"
    assert parse_datetime("2026-11-20T10:15:00.123+0000") == datetime(2026, 11, 20, 10, 15, 0, 123000, UTC)
    with pytest.raises(ValueError, match="naive"):
        format_datetime(datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        parse_datetime("2026-11-20T10:15:00")


# --- semantics against the SQLite store -------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    store = SalesforceStore(tmp_path / "sf.db")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.upsert(
        "Opportunity",
        [
            {
                "Id": f"006{i:015d}",
                "Name": f"Deal {i}",
                "StageName": [None, "Prospecting", "Closed Won"][i % 3],
                "Amount": Decimal("1000.50") * i,
                "CloseDate": date(2026, 1, 1) + timedelta(days=i),
                "IsWon": i % 3 == 2,
                "IsDeleted": i == 5,
                "SystemModstamp": t0 + timedelta(hours=i),
            }
            for i in range(10)
        ],
    )
    return store


def ids(store, soql, include_deleted=False):
    return [key[-1:] for key, _ in store.query(parse(soql), include_deleted=include_deleted)]


def test_semantics(store):
    assert ids(store, "SELECT Id FROM Opportunity") == list("012346789")
    assert ids(store, "SELECT Id FROM Opportunity", include_deleted=True) == list("0123456789")
    window = "SystemModstamp >= 2026-01-01T03:00:00Z AND SystemModstamp < 2026-01-01T08:00:00+00:00"
    assert ids(store, f"SELECT Id FROM Opportunity WHERE {window}") == list("3467")
    assert ids(store, "SELECT Id FROM Opportunity WHERE StageName != 'Prospecting'") == list("023689")
    assert ids(store, "SELECT Id FROM Opportunity WHERE StageName = null") == list("0369")
    assert ids(store, "SELECT Id FROM Opportunity WHERE NOT StageName = 'Closed Won'") == list("0134679")
    assert ids(store, "SELECT Id FROM Opportunity WHERE IsWon = true AND CloseDate > 2026-01-04") == list("8")
    assert ids(store, "SELECT Id FROM Opportunity WHERE Amount >= 7000 ORDER BY Amount DESC LIMIT 2") == list(
        "98"
    )
    assert ids(store, "SELECT Id FROM Opportunity ORDER BY StageName, Id DESC LIMIT 4") == list("9630")
    assert (
        store.count_query(parse("SELECT COUNT() FROM Opportunity WHERE IsWon = false"), include_deleted=False)
        == 7
    )


def test_records_carry_wire_values(store):
    [(key, record)] = store.query(
        parse("SELECT Id, Amount, CloseDate, IsWon, SystemModstamp FROM Opportunity WHERE Name = 'Deal 2'"),
        include_deleted=False,
    )
    assert record == {
        "Id": key,
        "Amount": 2001.0,
        "CloseDate": "2026-01-03",
        "IsWon": True,
        "SystemModstamp": "2026-01-01T02:00:00.000+0000",
    }


# --- describe drift: virtual columns ----------------------------------------------------------


def test_drifted_fields_become_virtual_columns(store):
    from tally_local.sfsim.faults import Faults

    drift = {
        "Opportunity": {
            "add": [{"name": "Region__c", "type": "string"}],
            "remove": ["StageName"],
            "retype": {"Amount": "string", "CloseDate": "datetime"},
        }
    }
    catalog = Faults(describe_drift=drift).drifted(store.catalog)
    query = parse(
        "SELECT Id, Region__c, Amount FROM Opportunity WHERE Amount = '2001.0' ORDER BY Region__c", catalog
    )
    sql, params = query.to_sql(include_deleted=False)
    assert "sfsim_added('Region__c', 'string', \"Id\")" in sql
    assert "sfsim_cast(\"Amount\", 'decimal', 'string') = ?" in sql and params == ["2001.0"]
    [(key, record)] = store.query(query, include_deleted=False)
    assert record == {"Id": key, "Region__c": f"Region__c-{key[-4:]}", "Amount": "2001.0"}
    [(_, record)] = store.query(
        parse("SELECT CloseDate FROM Opportunity WHERE Name = 'Deal 2'", catalog), include_deleted=False
    )
    assert record == {"CloseDate": "2026-01-03T00:00:00.000+0000"}
    with pytest.raises(SoqlError, match="No such column 'StageName'"):
        parse("SELECT StageName FROM Opportunity", catalog)
    assert "StageName" in parse("SELECT StageName FROM Opportunity").dataset.field_names  # catalog untouched


@pytest.mark.parametrize(
    ("value", "old", "new", "expected"),
    [
        (1242.56, "decimal", "string", "1242.56"),
        (100.0, "double", "string", "100.0"),
        (1e16, "double", "string", "10000000000000000"),
        (1, "bool", "string", "true"),
        ("2026-01-02T03:04:05.000+0000", "datetime", "date", "2026-01-02"),
        ("2026-01-02", "date", "datetime", "2026-01-02T00:00:00.000+0000"),
        ("12.5", "string", "double", 12.5),
        ("abc", "string", "double", None),
        (3.0, "double", "int", 3),
        (3.5, "double", "int", None),
        ("TRUE", "string", "bool", 1),
        ("maybe", "string", "bool", None),
        (None, "string", "int", None),
    ],
)
def test_cast_value(value, old, new, expected):
    from tally_local.sfsim.faults import cast_value

    assert cast_value(value, old, new) == expected
