"""Quality gate on DataFrames and lake partitions (no services).

GX is slow to import (~9 s) and to set up, so it is only imported through ``tally.quality.context``
calls, and the process's one cached context serves the whole module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tally import catalog
from tally.core import paths
from tally.lake import Lake, PartitionWriter, arrow_schema
from tally.quality import context, parquet, suites
from tally.quality.result import GateResult, from_gx
from tally.quality.suites import SuiteError

STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Proposal/Price Quote",
          "Negotiation/Review", "Closed Won", "Closed Lost"]
RAW_SUITES = ["raw.salesforce.User", "raw.salesforce.Account", "raw.salesforce.Opportunity",
              "raw.erp.customers", "raw.erp.sales_orders"]


@pytest.fixture(autouse=True)
def data_docs(tmp_path, monkeypatch) -> Path:
    """Every validation publishes a Data Docs page: into this test's own folder."""
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))
    return tmp_path / "data_docs"


def opportunities(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "Id": [f"006{i:015d}" for i in range(n)],
        "Name": [f"Deal {i}" for i in range(n)],
        "StageName": [STAGES[i % len(STAGES)] for i in range(n)],
        "Probability": [float(i % 101) if i % 7 else None for i in range(n)],
        "Amount": [Decimal(f"{i}.25") for i in range(n)],
        "SystemModstamp": pd.Timestamp("2024-01-02T03:04:05", tz="UTC"),
    })


def only(result: GateResult, expectation: str, column: str | None = None) -> dict:
    hits = [f for f in result.failures if f["expectation"] == expectation and (column is None or f["column"] == column)]
    assert len(hits) == 1, result.failures
    return hits[0]


# -- suite files --------------------------------------------------------------------------------
def test_importing_the_package_does_not_import_great_expectations():
    code = ("import sys, tally.quality, tally.quality.context, tally.quality.parquet, tally.quality.postgres,"
            " tally.gates.raw; assert 'great_expectations' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_suites_are_reviewable_and_load_in_gx():
    names = suites.list_suites()
    assert set(RAW_SUITES + ["mart.mart_rep_performance"]) <= set(names)
    for name in names:
        data = suites.load_suite_dict(name)
        hop, dataset = suites.split_name(name)
        assert hop in suites.HOPS
        assert data["meta"]["notes"], f"{name}: say what the suite guards"
        assert all(e.get("meta", {}).get("notes") for e in data["expectations"]), name
        # every runtime parameter is documented for whoever calls the gate
        assert set(suites.suite_parameters(data)) == set(data["meta"]["parameters"]), name
        built = suites.build_suite(data)
        assert len(built.expectations) == len(data["expectations"])
        assert set(built.suite_parameter_options) == set(suites.suite_parameters(data))


@pytest.mark.parametrize("name", RAW_SUITES)
def test_raw_suites_check_the_catalog_key_and_cursor(name):
    data = suites.load_suite_dict(name)
    dataset = catalog.get(suites.split_name(name)[1])
    checks = {(e["type"], e["kwargs"].get("column")) for e in data["expectations"]}
    assert ("expect_column_values_to_not_be_null", dataset.key) in checks
    assert ("expect_column_values_to_be_unique", dataset.key) in checks
    assert ("expect_column_values_to_not_be_null", dataset.cursor) in checks
    assert ("expect_table_row_count_to_equal", None) in checks
    assert set(suites.suite_columns(data)) <= set(dataset.field_names)


def test_suite_columns_and_parameters():
    data = suites.load_suite_dict("raw.salesforce.Opportunity")
    assert suites.suite_columns(data) == ["Id", "SystemModstamp", "Probability", "StageName", "Amount"]
    assert suites.suite_parameters(data) == ["source_count"]
    mart = suites.load_suite_dict("mart.mart_rep_performance", TEST_SUITES)
    assert suites.suite_columns(mart) == ["ds", "owner_id", "percent_rank_in_region", "win_rate", "won_amount"]
    assert suites.suite_parameters(mart) == ["expected_rows", "expected_won_amount"]


def write_suite(directory: Path, file_name: str, expectations: list[dict], **extra) -> None:
    body = {"name": file_name, "expectations": expectations, "meta": {"notes": "test"}, **extra}
    (directory / f"{file_name}.json").write_text(json.dumps(body))


def test_bad_suites_fail_loudly(tmp_path):
    with pytest.raises(SuiteError, match="does not exist"):
        suites.load_suite_dict("raw.nope.Nothing", tmp_path)
    write_suite(tmp_path, "raw.x.Y", [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 1}}],
                name="raw.x.Z")
    with pytest.raises(SuiteError, match="expected 'raw.x.Y'"):
        suites.load_suite_dict("raw.x.Y", tmp_path)
    # GX itself would log and drop an unknown expectation, leaving a gate that checks less than reviewed
    write_suite(tmp_path, "raw.x.Typo", [{"type": "expect_colum_values_to_be_unique", "kwargs": {"column": "a"}}])
    with pytest.raises(SuiteError, match="expect_colum_values_to_be_unique"):
        context.validate_dataframe("raw.x.Typo", pd.DataFrame({"a": [1]}), {}, suites_dir=tmp_path)


def test_expectations_dir_env_override(tmp_path, monkeypatch):
    write_suite(tmp_path, "curated.t", [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": 2}}])
    monkeypatch.setenv(paths.EXPECTATIONS_ENV, str(tmp_path))
    assert suites.list_suites() == ["curated.t"]
    assert context.validate_dataframe("curated.t", pd.DataFrame({"a": [1, 2]}), {}).success


def test_missing_parameter_is_an_error_not_a_failure():
    with pytest.raises(ValueError, match=r"needs parameter\(s\) \['source_count'\]"):
        context.validate_dataframe("raw.salesforce.Opportunity", opportunities(3), {})


# -- DataFrame validation -----------------------------------------------------------------------
def test_valid_opportunities_pass():
    result = context.validate_dataframe("raw.salesforce.Opportunity", opportunities(1000), {"source_count": 1000})
    assert result.success, result.summary()
    assert (result.suite, result.hop, result.dataset) == ("raw.salesforce.Opportunity", "raw", "salesforce.Opportunity")
    assert (result.evaluated, result.failed, result.failures) == (7, 0, [])
    assert result.summary() == "raw.salesforce.Opportunity: 7/7 passed"
    assert datetime.fromisoformat(result.run_at).tzinfo == UTC


def test_wrong_row_count():
    result = context.validate_dataframe("raw.salesforce.Opportunity", opportunities(998), {"source_count": 1000})
    assert not result.success and (result.evaluated, result.failed) == (7, 1)
    assert result.failures[0] | {"note": None} == {
        "expectation": "expect_table_row_count_to_equal", "column": None,
        "observed": 998, "expected": 1000, "sample": [], "note": None, "severity": "fail",
    }
    assert result.summary() == (
        "raw.salesforce.Opportunity: 6/7 passed; expect_table_row_count_to_equal observed 998 expected 1000"
    )


def test_duplicate_key():
    df = opportunities(100)
    df.loc[[10, 20, 30], "Id"] = "006DUPLICATE0000AB"
    result = context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 100})
    assert result.failed == 1
    f = only(result, "expect_column_values_to_be_unique", "Id")
    assert (f["observed"], f["expected"], f["element_count"]) == (3, 0, 100)
    assert f["key"] == ["Id"] and f["sample"] == [{"key": {"Id": "006DUPLICATE0000AB"}, "values": {}}] * 3
    assert "expect_column_values_to_be_unique(Id) observed 3 of 100 rows not unique" in result.summary()


def test_null_key():
    df = opportunities(50)
    df.loc[7, "Id"] = None
    result = context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 50})
    assert result.failed == 1
    f = only(result, "expect_column_values_to_not_be_null", "Id")
    assert (f["observed"], f["expected"], f["sample"]) == (1, 0, [{"key": {"Id": None}, "values": {}}])


def test_out_of_domain_stage_and_probability():
    df = opportunities(40)
    df.loc[[1, 2], "StageName"] = "Closed Sort Of"
    df.loc[3, "Probability"] = 150.0
    result = context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 40})
    assert result.failed == 2
    stage = only(result, "expect_column_values_to_be_in_set", "StageName")
    assert (stage["observed"], stage["expected"]) == (2, 0)
    assert stage["sample"] == [{"key": {"Id": df.loc[i, "Id"]}, "values": {"StageName": "Closed Sort Of"}}
                               for i in (1, 2)]
    assert stage["condition"].startswith("in {Closed Lost, Closed Won,")
    prob = only(result, "expect_column_values_to_be_between", "Probability")
    assert (prob["observed"], prob["condition"]) == (1, "between 0 and 100")
    assert prob["sample"] == [{"key": {"Id": df.loc[3, "Id"]}, "values": {"Probability": 150.0}}]
    assert f"e.g. Id {df.loc[3, 'Id']} (Probability 150.0)" in result.summary()
    # failures come in suite order; the summary names each
    assert [f["column"] for f in result.failures] == ["Probability", "StageName"]
    assert result.summary().startswith("raw.salesforce.Opportunity: 5/7 passed; expect_column_values_to_be_between")


def test_sample_is_capped_at_ten():
    df = opportunities(100)
    df.loc[:49, "StageName"] = [f"Bogus {i}" for i in range(50)]
    f = only(context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 100}),
             "expect_column_values_to_be_in_set")
    assert f["observed"] == 50 and len(f["sample"]) == 10


def test_counts_then_samples_returns_what_one_basic_pass_does():
    """The gate counts first and samples only the expectations that found offending rows; the
    results equal GX's single BASIC pass: failures with samples, a ``mostly`` expectation that
    passes with offending rows (and its sample), clean expectations with their zero counts."""
    from great_expectations.validator.v1_validator import Validator

    df = opportunities(60)
    df.loc[[3, 9], "StageName"] = "Closed Sort Of"
    df.loc[5, "Probability"] = 150.0
    suite_dict = suites.load_suite_dict("raw.salesforce.Opportunity")
    suite_dict["expectations"].append({"type": "expect_column_values_to_match_regex",
                                       "kwargs": {"column": "Name", "regex": "^Deal [0-4]$", "mostly": 0.05}})
    params = {"source_count": 60}
    frame = context.prepare_frame(df, suite_dict)
    suite, two_pass = context.validate_frame(suite_dict, frame, params)
    one_pass = Validator(context.pandas_batch_definition(context.get_context()), result_format=context.RESULT_FORMAT,
                         batch_parameters={"dataframe": frame}).validate_expectation_suite(suite, params)

    def outcome(result) -> list[str]:
        return sorted(json.dumps([r.expectation_config.type, r.expectation_config.kwargs, r.success, r.result],
                                 sort_keys=True, default=str) for r in result.results)

    # the sample pass also fetched the offending rows, key and checked column only
    rows = {r.expectation_config.kwargs["column"]: r.result.pop("unexpected_rows")
            for r in two_pass.results if "unexpected_rows" in (r.result or {})}
    assert rows["Probability"] == [{"Id": df.loc[5, "Id"], "Probability": 150.0}]
    assert rows["StageName"] == [{"Id": df.loc[i, "Id"], "StageName": "Closed Sort Of"} for i in (3, 9)]
    assert outcome(two_pass) == outcome(one_pass)
    regex = next(r for r in two_pass.results if r.expectation_config.type == "expect_column_values_to_match_regex")
    assert regex.success and regex.result["unexpected_count"] == 55
    assert regex.result["partial_unexpected_list"] == [f"Deal {i}" for i in range(5, 15)]
    assert [f["column"] for f in from_gx(suite_dict, two_pass, target="t", parameters=params).failures] \
        == ["Probability", "StageName"]


def test_every_reason_at_once_and_json_result():
    df = opportunities(20)
    df.loc[0, "Id"] = None
    df.loc[1, "Id"] = df.loc[2, "Id"]
    df.loc[3, "StageName"] = "Won-ish"
    df.loc[4, "SystemModstamp"] = pd.NaT
    result = context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 21})
    assert {(f["expectation"], f["column"]) for f in result.failures} == {
        ("expect_table_row_count_to_equal", None),
        ("expect_column_values_to_not_be_null", "Id"),
        ("expect_column_values_to_be_unique", "Id"),
        ("expect_column_values_to_not_be_null", "SystemModstamp"),
        ("expect_column_values_to_be_in_set", "StageName"),
    }
    assert result.failed == 5 and result.passed == 2
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["failures"] == result.failures and as_json["parameters"] == {"source_count": 21}


def test_sales_orders_decimals_and_nulls():
    df = pd.DataFrame({
        "order_id": [1, 2, 3, 4],
        "status": ["open", "shipped", "invoiced", "refunded"],
        "total_amount": [Decimal("10.50"), None, Decimal("-0.01"), Decimal("0")],
        "updated_at": pd.Timestamp("2024-01-02", tz="UTC"),
    })
    result = context.validate_dataframe("raw.erp.sales_orders", df, {"source_count": 4})
    assert result.failed == 2
    assert only(result, "expect_column_values_to_be_in_set", "status")["sample"] == [
        {"key": {"order_id": 4}, "values": {"status": "refunded"}}]
    amount = only(result, "expect_column_values_to_be_between", "total_amount")
    assert (amount["observed"], amount["condition"]) == (1, ">= 0")
    assert amount["sample"] == [{"key": {"order_id": 3}, "values": {"total_amount": "-0.01"}}]


def test_missing_column_is_a_failure_with_the_error():
    df = opportunities(5).drop(columns=["StageName"])
    result = context.validate_dataframe("raw.salesforce.Opportunity", df, {"source_count": 5})
    f = only(result, "expect_column_values_to_be_in_set", "StageName")
    assert 'column "StageName"' in f["error"] and "does not exist" in f["error"]
    assert "expect_column_values_to_be_in_set(StageName) could not run" in result.summary()


TEST_SUITES = Path(__file__).resolve().parents[2] / "suites"  # a frozen mart suite (tests/suites/README.md)


def mart_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "ds": ["2024-01-02"] * 4,
        "owner_id": ["005A", "005B", "005C", "005D"],
        "won_amount": [Decimal("1000.10"), Decimal("0"), None, Decimal("250.005")],
        "win_rate": [Decimal("0.5"), None, Decimal("1"), Decimal("0")],
        "percent_rank_in_region": [0.0, 0.5, 1.0, 0.25],
    }, index=[10, 11, 12, 13])  # not 0..n: GX's in-place Decimal conversion aligns on the index


def test_mart_suite_on_a_frame_sums_decimals_without_touching_the_callers_frame():
    df = mart_frame()
    ok = context.validate_dataframe("mart.mart_rep_performance", df,
                                 {"expected_rows": 4, "expected_won_amount": Decimal("1250.105")},
                                 suites_dir=TEST_SUITES)
    assert ok.success, ok.summary()
    assert df["won_amount"].tolist() == [Decimal("1000.10"), Decimal("0"), None, Decimal("250.005")]

    df.loc[13, "owner_id"] = "005A"
    df.loc[13, "ds"] = "2024-01-02"
    bad = context.validate_dataframe("mart.mart_rep_performance", df,
                                  {"expected_rows": 4, "expected_won_amount": Decimal("1250.115")},
                                  suites_dir=TEST_SUITES)
    compound = only(bad, "expect_compound_columns_to_be_unique")
    assert compound["column"] == ["ds", "owner_id"] and compound["observed"] == 2
    assert compound["sample"] == [{"key": {"owner_id": "005A"}, "values": {}}] * 2  # the grain without ds
    total = only(bad, "expect_column_sum_to_be_between", "won_amount")
    assert (total["observed"], total["expected"]) == (1250.105, 1250.115)
    assert bad.failed == 2


# -- lake partitions ----------------------------------------------------------------------------
OPP = catalog.SALESFORCE["Opportunity"]


def opportunity_rows(start: int, n: int) -> list[dict]:
    ts = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    return [{
        "Id": f"006{i:015d}", "Name": f"Deal {i}", "AccountId": None, "OwnerId": "005000000000000AAA",
        "StageName": STAGES[i % 8], "Amount": Decimal(f"{i}.5"), "Probability": float(i % 100),
        "CloseDate": None, "IsClosed": False, "IsWon": False, "IsDeleted": False,
        "CreatedDate": ts, "SystemModstamp": ts,
    } for i in range(start, start + n)]


def land(lake: Lake, ds: str, chunks: list[list[dict]], rows_per_file: int) -> dict:
    schema = arrow_schema(OPP)
    batches = [pa.RecordBatch.from_pylist(rows, schema=schema) for rows in chunks]
    files = PartitionWriter(lake, OPP.lake_path, ds).write(schema, batches, rows_per_file=rows_per_file)
    return lake.write_manifest(OPP.lake_path, ds, {"files": files, "row_count": sum(map(len, chunks))})


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


def test_validate_parquet_reads_only_manifest_files_and_suite_columns(lake, monkeypatch):
    manifest = land(lake, "2024-01-02", [opportunity_rows(0, 300), opportunity_rows(300, 300)], rows_per_file=300)
    assert len(manifest["files"]) == 2
    # a stray file in the partition that the manifest does not list (a crashed re-run) is not read
    stray = opportunity_rows(0, 10)
    pa.parquet.write_table(pa.Table.from_pylist(stray, schema=arrow_schema(OPP)),
                           lake.path(lake.partition(OPP.lake_path, "2024-01-02"), "part-00099.parquet"))
    seen: list = []
    real = lake.read_table

    def spy(dataset_path, ds, columns=None):
        seen.append(columns)
        return real(dataset_path, ds, columns=columns)

    monkeypatch.setattr(lake, "read_table", spy)
    result = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-02",
                                   {"source_count": 600})
    assert result.success, result.summary()
    assert seen == [["Id", "SystemModstamp", "Probability", "StageName", "Amount"]]
    assert "ds=2024-01-02 (2 files, 600 rows)" in result.target


def test_validate_parquet_reports_lost_rows_and_bad_values(lake):
    rows = opportunity_rows(0, 50)
    rows[5]["StageName"] = "Nurture"
    rows[6]["Id"] = rows[7]["Id"]
    land(lake, "2024-01-03", [rows], rows_per_file=1000)
    result = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-03",
                                   {"source_count": 52})
    assert {(f["expectation"], f["observed"]) for f in result.failures} == {
        ("expect_table_row_count_to_equal", 50),
        ("expect_column_values_to_be_unique", 2),
        ("expect_column_values_to_be_in_set", 1),
    }
    assert only(result, "expect_column_values_to_be_in_set")["sample"] == [
        {"key": {"Id": rows[5]["Id"]}, "values": {"StageName": "Nurture"}}]


def test_validate_parquet_explicit_columns_and_table_only_suite(lake, tmp_path):
    land(lake, "2024-01-04", [opportunity_rows(0, 7), opportunity_rows(7, 5)], rows_per_file=7)
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    write_suite(suite_dir, "raw.salesforce.Opportunity",
                [{"type": "expect_table_row_count_to_equal", "kwargs": {"value": {"$PARAMETER": "source_count"}}}],
                meta={"notes": "count only"})
    # no column needed: rows are counted from the parquet footers of both files
    counted = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-04",
                                    {"source_count": 12}, suites_dir=suite_dir)
    assert counted.success, counted.summary()
    short = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-04",
                                  {"source_count": 13}, columns=["Id"], suites_dir=suite_dir)
    assert short.summary() == "raw.salesforce.Opportunity: 0/1 passed; expect_table_row_count_to_equal observed 12 expected 13"


def test_validate_parquet_uncommitted_ds(lake):
    with pytest.raises(FileNotFoundError, match="not committed"):
        parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2030-01-01", {"source_count": 0})


# -- bounded memory: big partitions are validated batch-wise, exactly -------------------------------
def test_batch_wise_validation_equals_whole_partition_and_bounds_the_frames(lake, monkeypatch):
    rows = opportunity_rows(0, 600)
    rows[5]["StageName"] = "Nurture"
    rows[450]["StageName"] = "Bogus"
    rows[10]["Id"] = rows[500]["Id"]  # a duplicate key in another file and another batch
    rows[20]["Probability"] = 300.0
    rows[30]["Probability"] = None  # allowed: nulls are not range failures
    land(lake, "2024-01-05", [rows[:300], rows[300:]], rows_per_file=300)
    whole = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-05",
                                  {"source_count": 601})
    sizes: list[int] = []
    real = parquet.validate_frame

    def spy(suite_dict, frame, params):
        if len(frame.columns):  # the row-count check gets a zero-column frame of 600 rows: no data
            sizes.append(len(frame))
        return real(suite_dict, frame, params)

    monkeypatch.setattr(parquet, "validate_frame", spy)
    batched = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-05",
                                    {"source_count": 601}, batch_rows=100)
    assert max(sizes) <= 100 and sum(sizes) == 600  # never more than one batch of data in pandas
    assert "validated in batches of 100" in batched.target
    assert (batched.success, batched.evaluated, batched.failed) == (whole.success, whole.evaluated, whole.failed) \
        == (False, 7, 4)
    assert batched.failures == whole.failures
    unique = only(batched, "expect_column_values_to_be_unique", "Id")
    assert (unique["unexpected_count"], unique["element_count"]) == (2, 600)
    assert unique["sample"] == [{"key": {"Id": rows[500]["Id"]}, "values": {}}] * 2
    assert only(batched, "expect_column_values_to_be_in_set")["sample"] == [
        {"key": {"Id": rows[i]["Id"]}, "values": {"StageName": rows[i]["StageName"]}} for i in (5, 450)]
    assert only(batched, "expect_table_row_count_to_equal")["observed"] == 600


def test_batch_wise_validation_passes_a_clean_partition(lake):
    land(lake, "2024-01-06", [opportunity_rows(0, 250), opportunity_rows(250, 250)], rows_per_file=250)
    result = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-06",
                                   {"source_count": 500}, batch_rows=64)
    assert result.success, result.summary()
    assert result.passed == result.evaluated == 7


def test_compound_uniqueness_is_exact_across_batches(lake, tmp_path):
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    write_suite(suite_dir, "raw.salesforce.Opportunity", [
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["OwnerId", "Name"]}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Id"}}], meta={"notes": "x"})
    rows = opportunity_rows(0, 40)
    rows[35]["Name"] = rows[3]["Name"]  # same owner, same name, 32 rows apart
    land(lake, "2024-01-07", [rows], rows_per_file=1000)
    batched = parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, "2024-01-07",
                                    suites_dir=suite_dir, batch_rows=10)
    failure = only(batched, "expect_compound_columns_to_be_unique")
    assert failure["unexpected_count"] == 2
    assert failure["sample"] == [{"key": {"OwnerId": "005000000000000AAA", "Name": "Deal 3"}, "values": {}}] * 2


def test_decimal_columns_checked_only_as_numbers_reach_pandas_as_floats():
    import pyarrow as pa

    table = pa.table({"amount": pa.array([Decimal("1.25"), None], pa.decimal128(18, 2)),
                      "code": pa.array([Decimal("7.00"), Decimal("8.00")], pa.decimal128(18, 2))})
    suite = {"name": "raw.x.y", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "amount", "min_value": 0}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "code", "value_set": [7]}}]}
    frame = parquet._to_pandas(table, suite)
    assert str(frame["amount"].dtype) == "float64" and frame["amount"].iloc[0] == 1.25
    assert frame["code"].iloc[0] == Decimal("7.00")  # an exact-value check keeps the Decimal


# -- the preload: forked processes inherit a loaded, warmed-up GX -----------------------------------
def test_a_process_forked_after_preload_validates_without_importing_gx(tmp_path):
    code = f"""
import os, sys
os.environ["TALLY_DATA_DOCS_DIR"] = {str(tmp_path / "docs")!r}
from tally.airflow.preload import preload
preload()
assert "great_expectations" in sys.modules
from tally.quality import context
assert context._CONTEXT is not None
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    import pandas as pd
    before = set(sys.modules)
    result = context.validate_dataframe("raw.salesforce.User", pd.DataFrame({{"Id": ["005000000000000AAA"],
        "SystemModstamp": [pd.Timestamp("2024-01-02", tz="UTC")], "IsActive": [True]}}), {{"source_count": 1}})
    new = sorted(m for m in set(sys.modules) - before if m.startswith("great_expectations"))
    os.write(w, repr((new, result.evaluated > 0, bool(result.data_docs))).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
print(os.read(r, 10000).decode())
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "([], True, True)", out.stderr[-3000:]


def test_preload_launcher_is_the_scheduler_command(monkeypatch):
    from tally_local.stack import airflow

    monkeypatch.delenv("TALLY_PRELOAD_GX", raising=False)
    # the log server runs apart, bound to 127.0.0.1 (tally_local.stack.airflow): --skip-serve-logs
    assert airflow.command("scheduler") == [sys.executable, "-m", "tally.airflow.preload", "scheduler",
                                            "--skip-serve-logs"]
    assert airflow.command("dag-processor")[-1] == "dag-processor"  # DAG parsing stays GX-free
    assert "tally.airflow.preload" not in airflow.command("api-server")
    monkeypatch.setenv("TALLY_PRELOAD_GX", "false")
    assert airflow.command("scheduler")[1:] == ["scheduler", "--skip-serve-logs"]


def test_modules_importing_cheaply():
    code = ("import sys, tally.airflow.preload, tally.quality.docs, tally.alerts.model;"
            " assert 'great_expectations' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
