"""Quality gate pushed down into a real Postgres (fixture ``warehouse_dsn``, a libpq conninfo/URI).

The table lives in a schema of its own per test run (same columns as ``marts.mart_rep_performance``)
so that it cannot collide with the marts dbt builds in the same warehouse.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from tally.quality import postgres
from tally.quality.result import GateError

pytestmark = pytest.mark.integration

SUITE = "mart.mart_rep_performance"  # the frozen copy in tests/suites (tests/suites/README.md)


@pytest.fixture(autouse=True)
def frozen_suites(monkeypatch):
    from pathlib import Path

    from tally.core import paths

    monkeypatch.setenv(paths.EXPECTATIONS_ENV, str(Path(__file__).resolve().parents[1] / "suites"))
DS1, DS2 = date(2024, 1, 1), date(2024, 1, 2)
COLUMNS = """(ds date, owner_id text, owner_name text, region text, won_amount numeric(38,9),
    won_count bigint, closed_count bigint, win_rate numeric, open_pipeline numeric(38,9),
    opportunity_count bigint, percent_rank_in_region double precision, is_active boolean)"""
REPS = 25


def rep_rows(ds: date) -> list[tuple]:
    rows = []
    for i in range(REPS):
        closed = i % 5
        won = closed // 2
        rows.append((
            ds, f"005{i:015d}", f"Rep {i}", ["EMEA", "AMER", "APAC"][i % 3],
            Decimal(f"{1234567 + i * 1000}.123456789") if won else Decimal(0), won, closed,
            (Decimal(won) / Decimal(closed)) if closed else None, Decimal(f"{i * 10}.5"), closed + 3,
            (i % 9) / 8, i % 4 != 0,
        ))
    return rows


def won_total(rows: list[tuple]) -> Decimal:
    return sum((r[4] for r in rows), Decimal(0))


@pytest.fixture
def mart(warehouse_dsn):
    """A fresh mart_rep_performance with two ds of rows; yields (schema, table, rows by ds)."""
    schema = f"marts_gate_{uuid.uuid4().hex[:8]}"
    rows = {DS1: rep_rows(DS1), DS2: rep_rows(DS2)}
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        table = sql.Identifier(schema, "mart_rep_performance")
        conn.execute(sql.SQL("CREATE TABLE {} " + COLUMNS).format(table))
        with conn.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {} VALUES (" + ", ".join(["%s"] * 12) + ")").format(table),
                            rows[DS1] + rows[DS2])
    try:
        yield schema, "mart_rep_performance", rows
    finally:
        with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def insert(dsn: str, schema: str, row: tuple) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (" + ", ".join(["%s"] * 12) + ")").format(
                sql.Identifier(schema, "mart_rep_performance")),
            row,
        )


def test_one_ds_passes(warehouse_dsn, mart):
    schema, table, rows = mart
    params = {"expected_rows": REPS, "expected_won_amount": won_total(rows[DS2])}
    result = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, params, where={"ds": DS2})
    assert result.success, result.summary()
    assert (result.evaluated, result.failed) == (6, 0)
    assert result.summary() == f"{SUITE}: 6/6 passed"
    assert result.target == f'postgres "{schema}"."mart_rep_performance" WHERE "ds" = \'2024-01-02\'::date'
    # the same batch as a raw SQL predicate
    again = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, params, where="ds = '2024-01-02'")
    assert again.success, again.summary()


def test_a_clean_batch_is_not_scanned_for_samples(warehouse_dsn, mart):
    """Every query GX sends for a clean ds fetches no offending values (the sample pass runs only
    for expectations that counted some); a dirty ds gets its samples (next test)."""
    import sqlalchemy as sa

    schema, table, rows = mart
    limits: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if " LIMIT " in statement:
            limits.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        result = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table,
                                              {"expected_rows": REPS, "expected_won_amount": won_total(rows[DS2])},
                                              where={"ds": DS2})
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert result.success, result.summary()
    fetched = []
    for statement, parameters in limits:
        literal = re.search(r"LIMIT (\d+)", statement)
        bound = re.search(r"LIMIT %\((\w+)\)s", statement)
        fetched.append(int(literal.group(1)) if literal else parameters[bound.group(1)])
    assert fetched == [0] * 5, limits  # the probe, then the 4 row-level checks of the frozen suite


def test_whole_table_without_where(warehouse_dsn, mart):
    schema, table, rows = mart
    params = {"expected_rows": 2 * REPS, "expected_won_amount": won_total(rows[DS1] + rows[DS2])}
    result = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, params)
    assert result.success, result.summary()


def test_duplicate_owner_and_wrong_total_fail(warehouse_dsn, mart):
    schema, table, rows = mart
    dup = rows[DS2][3]
    insert(warehouse_dsn, schema, dup)
    insert(warehouse_dsn, schema, (DS2, "005BAD", "Bad", "EMEA", Decimal(0), 0, 0, Decimal("1.5"), 0, 0, 1.5, True))
    expected_total = won_total(rows[DS2]) + Decimal("0.01")  # off by one cent
    result = postgres.validate_postgres_table(
        SUITE, warehouse_dsn, schema, table,
        {"expected_rows": REPS, "expected_won_amount": expected_total}, where={"ds": DS2},
    )
    assert not result.success
    by_kind = {(f["expectation"], str(f["column"])): f for f in result.failures}
    assert set(by_kind) == {
        ("expect_table_row_count_to_equal", "None"),
        ("expect_compound_columns_to_be_unique", "['ds', 'owner_id']"),
        ("expect_column_values_to_be_between", "percent_rank_in_region"),
        ("expect_column_values_to_be_between", "win_rate"),
        ("expect_column_sum_to_be_between", "won_amount"),
    }
    count = by_kind[("expect_table_row_count_to_equal", "None")]
    assert (count["observed"], count["expected"]) == (REPS + 2, REPS)
    compound = by_kind[("expect_compound_columns_to_be_unique", "['ds', 'owner_id']")]
    assert compound["observed"] == 2
    # the offending rows by key (the grain without its ds), the value beside, numeric as exact text
    assert compound["sample"] == [{"key": {"owner_id": dup[1]}, "values": {}}] * 2
    assert by_kind[("expect_column_values_to_be_between", "win_rate")]["sample"] == [
        {"key": {"owner_id": "005BAD"}, "values": {"win_rate": "1.5"}}]
    assert by_kind[("expect_column_values_to_be_between", "percent_rank_in_region")]["sample"] == [
        {"key": {"owner_id": "005BAD"}, "values": {"percent_rank_in_region": 1.5}}]
    total = by_kind[("expect_column_sum_to_be_between", "won_amount")]
    assert total["observed"] == float(won_total(rows[DS2]) + dup[4])
    assert total["expected"] == float(expected_total)
    assert result.summary().startswith(
        f"{SUITE}: 1/6 passed; expect_table_row_count_to_equal observed {REPS + 2} expected {REPS}; "
        "expect_compound_columns_to_be_unique(ds, owner_id) observed 2 of 27 rows not unique"
    )
    # the other ds is untouched and still passes
    other = postgres.validate_postgres_table(
        SUITE, warehouse_dsn, schema, table,
        {"expected_rows": REPS, "expected_won_amount": won_total(rows[DS1])}, where={"ds": DS1},
    )
    assert other.success, other.summary()


def test_a_cent_off_in_the_total_is_caught(warehouse_dsn, mart):
    schema, table, rows = mart
    total = won_total(rows[DS2])
    assert total > Decimal("1e7")
    for off in (Decimal("0.01"), Decimal("-0.01")):
        result = postgres.validate_postgres_table(
            SUITE, warehouse_dsn, schema, table,
            {"expected_rows": REPS, "expected_won_amount": total + off}, where={"ds": DS2},
        )
        assert [f["expectation"] for f in result.failures] == ["expect_column_sum_to_be_between"]


def test_uri_conninfo_and_missing_table(warehouse_dsn, mart):
    schema, table, rows = mart
    parts = psycopg.conninfo.conninfo_to_dict(warehouse_dsn)
    uri = f"postgresql://{parts['user']}:{parts['password']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
    params = {"expected_rows": REPS, "expected_won_amount": won_total(rows[DS1])}
    assert postgres.validate_postgres_table(SUITE, uri, schema, table, params, where={"ds": "2024-01-01"}).success
    # a batch that cannot be read at all is a broken pipeline: raise once, clearly
    with pytest.raises(GateError, match=f'"{schema}"."no_such_table": relation .* does not exist'):
        postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, "no_such_table", params)
    with pytest.raises(GateError, match='column "dss" does not exist'):
        postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, params, where="dss = '2024-01-01'")


def test_sql_validation_publishes_its_data_docs_page(warehouse_dsn, mart, tmp_path, monkeypatch):
    """The SQL-pushed-down gate gets a Data Docs page too, filed under the ds it validated."""
    import json

    from tally.quality import docs

    schema, table, rows = mart
    site = tmp_path / "data_docs"
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(site))
    suites_dir = tmp_path / "suites"
    suites_dir.mkdir()
    (suites_dir / f"{SUITE}.json").write_text(json.dumps({"name": SUITE, "meta": {"notes": "x"}, "expectations": [
        {"type": "expect_table_row_count_to_equal", "kwargs": {"value": {"$PARAMETER": "expected_rows"}}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "owner_id"}}]}))
    insert(warehouse_dsn, schema, rep_rows(DS2)[0])  # a duplicated owner in ds 2
    result = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, {"expected_rows": REPS},
                                          where={"ds": DS2}, suites_dir=suites_dir)
    assert not result.success and result.failed == 2
    assert result.data_docs.startswith("validations/mart/mart_rep_performance/2024-01-02/")
    page = (site / result.data_docs).read_text()
    assert "owner_id" in page and "005000000000000000" in page  # GX's page shows the duplicated key
    entry = docs.latest(site)[0]
    assert entry["asset_name"] == result.target and entry["validation_success"] is False


@pytest.mark.timeout(120)  # a child reading the parent's socket waits forever
def test_forked_workers_validate_on_their_own_connections(warehouse_dsn, mart):
    """A gate forks its validations (tally.quality.parallel) after this process has connected: the
    children must not share the parent's pooled connection, and the parent's keeps working."""
    from tally.quality.parallel import fork_each

    schema, table, rows = mart

    def validate(ds: date) -> tuple[bool, str]:
        params = {"expected_rows": REPS, "expected_won_amount": won_total(rows[ds])}
        result = postgres.validate_postgres_table(SUITE, warehouse_dsn, schema, table, params, where={"ds": ds})
        return result.success, result.summary()

    assert validate(DS1)[0]  # the parent's engine now holds a pooled connection
    assert fork_each(validate, [DS1, DS2, DS1, DS2], workers=2) == [(True, f"{SUITE}: 6/6 passed")] * 4
    assert validate(DS2)[0]
