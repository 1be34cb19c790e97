"""The curated Spark jobs (spark_jobs/) in-process on a tiny raw lake, against an independent
Python model of docs/curated.md (tests/integration/curated_world.py), and the curated gate on
their outputs."""

from __future__ import annotations

import json
from decimal import Decimal

import curated_world as w
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from tally import catalog, sfid
from tally.contract import CURATED
from tally.core.errors import DataProblem
from tally.core.resources import Resources
from tally.gates.curated import expected_curated_keys, gate_curated
from tally.lake import MANIFEST, Lake, schema_fingerprint
from tally.lake.checksum import checksum

pytestmark = pytest.mark.integration

KEYS = catalog.CURATED_KEYS
JOBS = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")
# The contract's columns and types (docs/curated.md); the warehouse tables and dbt rely on them.
MONEY, TS = pa.decimal128(38, 9), pa.timestamp("us", tz="UTC")
COLUMNS = {
    "conformed_customers": [("customer_id", pa.int64()), ("customer_name", pa.string()), ("country", pa.string()),
                            ("sf_account_ref", pa.string()), ("account_id", pa.string()),
                            ("resolution", pa.string()), ("is_resolved", pa.bool_())],
    "opportunities": [("opportunity_id", pa.string()), ("opportunity_name", pa.string()), ("account_id", pa.string()),
                      ("account_name", pa.string()), ("billing_country", pa.string()), ("industry", pa.string()),
                      ("owner_id", pa.string()), ("owner_name", pa.string()), ("region", pa.string()),
                      ("stage_name", pa.string()), ("probability", pa.float64()), ("close_date", pa.date32()),
                      ("is_closed", pa.bool_()), ("is_won", pa.bool_()), ("currency_iso_code", pa.string()),
                      ("amount", MONEY), ("fx_rate", pa.float64()), ("reporting_currency", pa.string()),
                      ("amount_reporting", MONEY), ("customer_id", pa.int64()), ("order_count", pa.int32()),
                      ("created_date", TS), ("system_modstamp", TS)],
    "order_links": [("order_id", pa.int64()), ("customer_id", pa.int64()), ("account_id", pa.string()),
                    ("opportunity_id", pa.string()), ("link", pa.string()), ("order_date", pa.date32()),
                    ("status", pa.string()), ("currency", pa.string()), ("total_amount", MONEY),
                    ("fx_rate", pa.float64()), ("amount_reporting", MONEY)],
    "rep_rankings": [("ranking_id", pa.string()), ("owner_id", pa.string()), ("owner_name", pa.string()),
                     ("region", pa.string()), ("quarter", pa.string()), ("opportunity_count", pa.int64()),
                     ("won_count", pa.int64()), ("closed_count", pa.int64()), ("won_amount", MONEY),
                     ("open_pipeline", MONEY), ("win_rate", pa.float64()), ("percent_rank", pa.float64()),
                     ("dense_rank", pa.int32())],
    "account_engagement": [("account_id", pa.string()), ("account_name", pa.string()), ("events_total", pa.int64()),
                           ("events_30d", pa.int64()), ("distinct_users_30d", pa.int64()), ("last_event_at", TS),
                           ("page_views_30d", pa.int64()), ("feature_used_30d", pa.int64()),
                           ("logins_30d", pa.int64()), ("email_opens_30d", pa.int64()),
                           ("open_opportunities", pa.int64()), ("open_pipeline_reporting", MONEY)],
}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("curated") / "lake"
    lake = w.build_lake(root)
    summaries = {job: w.load_job(job).run(spark, str(root), w.RUN_DS) for job in JOBS}
    return lake, summaries


def curated(lake: Lake, name: str, ds: str = w.RUN_DS) -> tuple[dict, dict, pa.Schema]:
    table = lake.read_table(f"curated/{name}", ds)
    rows = {r[KEYS[name]]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows, f"{name}: duplicate keys"
    return rows, lake.read_manifest(f"curated/{name}", ds), table.schema


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def assert_rows(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, row in want.items():
        for column, value in public(row).items():
            if isinstance(value, float):
                assert got[key][column] == pytest.approx(value, rel=1e-12), (key, column)
            else:
                assert got[key][column] == value, (key, column)


@pytest.mark.parametrize("name", list(COLUMNS))
def test_outputs_follow_the_contract(world, name):
    lake, _ = world
    rows, manifest, schema = curated(lake, name)
    assert [(f.name, f.type) for f in schema] == COLUMNS[name]
    assert manifest["dataset"] == f"curated.{name}" and manifest["key"] == KEYS[name]
    assert manifest["row_count"] == len(rows) == len(w.expected()[name])
    assert manifest["key_checksum"] == checksum(rows)
    assert manifest["schema_fingerprint"] == schema_fingerprint(schema)
    part = lake.path(Lake.partition(f"curated/{name}", w.RUN_DS))
    listed = manifest["files"]
    assert sorted(i.base_name for i in lake.fs.get_file_info(pafs.FileSelector(part))) == sorted([*listed, MANIFEST])


def test_conformed_customers_resolve_messy_references_and_count_the_rest(world):
    lake, summaries = world
    rows, manifest, _ = curated(lake, "conformed_customers")
    want = w.expected()["conformed_customers"]
    assert_rows(rows, want)
    assert 10009 not in rows  # tombstoned in the ERP
    assert rows[10010]["resolution"] == "exact"  # the latest version's reference
    by = {r["customer_id"]: r["resolution"] for r in rows.values()}
    assert (by[10001], by[10002], by[10003], by[10004], by[10005]) == (
        "exact", "expanded_15", "case_fixed", "missing_ref", "missing_ref")
    assert by[10006] == by[10007] == by[10008] == "unknown_account"  # deleted, lower-cased 15-char, garbage
    assert rows[10003]["account_id"] == w.A[1] and rows[10002]["account_id"] == w.A[2]
    assert manifest["resolution_counts"] == {"exact": 2, "case_fixed": 1, "expanded_15": 1, "missing_ref": 2,
                                             "unknown_account": 3}
    assert manifest["unresolved"] == 5 == sum(not r["is_resolved"] for r in rows.values())
    assert manifest["inputs"] == {"erp.customers": [w.DS1, w.DS2], "salesforce.Account": [w.DS1, w.DS2]}
    assert summaries["conformed_customers"]["unresolved"] == 5


def test_opportunities_latest_live_tombstones_joins_and_fx(world):
    lake, _ = world
    rows, manifest, _ = curated(lake, "opportunities")
    assert_rows(rows, w.expected()["opportunities"])
    o = {n: rows.get(w.OP[n]) for n in w.OP}
    assert o[3] is None  # tombstone
    assert o[1]["amount"] == Decimal("150")  # second version; the uncommitted third is ignored
    assert o[2]["amount"] == Decimal("200")  # the stray file's version is not in the manifest
    assert o[4]["owner_name"] is None and o[5]["account_name"] is None and o[6]["account_name"] is None
    # EUR on 2024-02-01, the first day of the 0.8 range: 200 / 0.8
    assert (o[2]["fx_rate"], o[2]["amount_reporting"]) == (1 / 0.8, Decimal("250.000000000"))
    # EUR on 2024-01-31, the last day of the 0.9 range: 40.5 / 0.9
    assert o[6]["amount_reporting"] == Decimal("45.000000000")
    assert (o[4]["fx_rate"], o[4]["amount_reporting"]) == (None, None)  # no GBP rate in March: kept, counted
    assert o[8]["amount_reporting"] == Decimal("6.645060172")  # AUD at the corrected rate 1.523456
    assert manifest["fx_missing"] == 1 and manifest["reporting_currency"] == "USD"
    assert o[1]["customer_id"] == 10001  # A1 has customers 10001 and 10003: the lowest
    assert o[1]["order_count"] == 2  # orders 1 (exact) and 3 (wrong case)
    assert manifest["inputs"]["curated.conformed_customers"] == [w.RUN_DS]
    assert manifest["inputs"]["salesforce.Opportunity"] == [w.DS1, w.DS2]


def test_order_links_resolve_opportunity_references(world):
    lake, _ = world
    rows, manifest, _ = curated(lake, "order_links")
    assert_rows(rows, w.expected()["order_links"])
    assert 6 not in rows  # tombstoned order
    assert (rows[1]["opportunity_id"], rows[2]["opportunity_id"], rows[3]["opportunity_id"]) == (
        w.OP[1], w.OP[2], w.OP[1])
    assert rows[4]["link"] == rows[5]["link"] == rows[8]["link"] == "unlinked"
    assert rows[7]["opportunity_id"] == w.OP[8] and rows[7]["account_id"] is None  # unresolved customer, linked
    assert rows[2]["amount_reporting"] == Decimal("22.222222222")  # EUR 20 / 0.9 on the last day of a range
    assert rows[3]["amount_reporting"] == Decimal("37.500000000")  # EUR 30 / 0.8 on the first day of the next
    assert rows[5]["amount_reporting"] is None  # GBP in March: no rate
    assert manifest["link_counts"] == {"opportunity_ref": 4, "unlinked": 3}
    assert manifest["unlinked_reasons"] == {"missing_ref": 1, "unknown_opportunity": 2}
    assert manifest["ref_resolutions"] == {"exact": 2, "case_fixed": 1, "expanded_15": 1}
    assert manifest["fx_missing"] == 1


def test_rep_rankings_per_owner_and_quarter(world):
    lake, _ = world
    rows, manifest, _ = curated(lake, "rep_rankings")
    want = w.expected()["rep_rankings"]
    assert_rows(rows, want)
    assert manifest["skipped"] == {"no_owner": 1, "no_close_date": 1}
    # counted while the opportunities were written, not by another pass over them
    assert curated(lake, "opportunities")[1]["unrankable"] == manifest["skipped"]
    alice = rows[f"{w.U[1]}:2024-Q1"]
    assert alice["won_amount"] == Decimal("150") and alice["open_pipeline"] == Decimal("90")  # probability 89 counts
    bob = rows[f"{w.U[2]}:2024-Q1"]
    assert bob["won_count"] == 2 and bob["won_amount"] == Decimal("250")  # the zero-amount win counted, not summed
    assert bob["open_pipeline"] == 0  # probability 90 is not pipeline
    ghost = rows[f"{sfid.make('005', 999)}:2024-Q1"]  # the owner no User record has
    assert ghost["owner_name"] is None and ghost["region"] is None and ghost["won_amount"] is None


def test_rep_rankings_counts_what_it_skips_itself_when_the_opportunities_manifest_does_not(spark, tmp_path):
    """Opportunities committed before their manifest carried ``unrankable``."""
    root = tmp_path / "lake"
    lake = w.build_lake(root)
    for job in ("conformed_customers", "opportunity_enrichment"):
        w.load_job(job).run(spark, str(root), w.RUN_DS)
    path = "curated/opportunities"
    older = {k: v for k, v in lake.read_manifest(path, w.RUN_DS).items() if k not in ("unrankable", "ds", "committed_at")}
    lake.write_manifest(path, w.RUN_DS, older)
    assert "unrankable" not in lake.read_manifest(path, w.RUN_DS)
    w.load_job("rep_rankings").run(spark, str(root), w.RUN_DS)
    assert curated(lake, "rep_rankings")[1]["skipped"] == {"no_owner": 1, "no_close_date": 1}


def test_account_engagement_counts_match_an_independent_computation(world):
    lake, summaries = world
    rows, manifest, _ = curated(lake, "account_engagement")
    assert_rows(rows, w.expected()["account_engagement"])
    acme = rows[w.A[1]]
    # ev-0001 is older than 30 days, ev-0002 sits on the window start, ev-0004 came twice, ev-0012 is after ds
    assert (acme["events_total"], acme["events_30d"], acme["page_views_30d"]) == (5, 4, 2)
    assert rows[w.A[2]]["events_30d"] == 1  # the email open an hour before the window is out
    assert w.A[3] not in rows  # deleted account: its events are counted as unmatched
    read = w.event_counts()
    assert manifest["events"] == {"events_read": read["events_read"], "duplicate_events": 1,
                                  "events_distinct": read["events_distinct"], "events_matched": 8,
                                  "events_unmatched_account": 2}
    assert manifest["inputs"]["kafka.activity"] == sorted(d for d in w.EVENTS if d <= w.RUN_DS)
    assert summaries["account_engagement"]["events"] == manifest["events"]


def test_reporting_currency_is_configurable(spark, tmp_path):
    root = tmp_path / "lake"
    lake = w.build_lake(root)
    w.load_job("conformed_customers").run(spark, str(root), w.DS1)
    w.load_job("opportunity_enrichment").run(spark, str(root), w.DS1, reporting_currency="EUR")
    rows, manifest, _ = curated(lake, "opportunities", w.DS1)
    assert_rows(rows, w.expected(reporting="EUR", run_ds=w.DS1)["opportunities"])
    assert manifest["reporting_currency"] == "EUR"
    assert rows[w.OP[2]]["amount_reporting"] == Decimal("200")  # EUR in EUR: exactly
    assert rows[w.OP[1]]["amount_reporting"] == Decimal("80.000000000")  # USD 100 * 0.8 on 2024-02-10
    rep = w.load_job("rep_rankings")
    with pytest.raises(rep.lib.JobError, match="is in EUR, not USD"):
        rep.run(spark, str(root), w.DS1, reporting_currency="USD")


def test_jobs_commit_empty_outputs_when_no_opportunity_and_no_event_landed(spark, tmp_path):
    """Every count is measured while writing; with empty inputs Spark prunes whole branches of a
    plan, and a measurement inside a pruned branch would never report (the job would hang)."""
    import shutil

    root = tmp_path / "lake"
    lake = w.build_lake(root)
    shutil.rmtree(root / catalog.get("salesforce.Opportunity").lake_path)
    shutil.rmtree(root / "raw/kafka/activity")
    for name in ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement"):
        w.load_job(name).run(spark, str(root), w.RUN_DS)
    for name in ("opportunities", "rep_rankings"):
        rows, manifest, _ = curated(lake, name)
        assert rows == {} and manifest["row_count"] == 0 and manifest["key_checksum"] == checksum([])
    _, links, _ = curated(lake, "order_links")
    assert links["row_count"] > 0 and links["link_counts"]["opportunity_ref"] == 0  # nothing to link to
    _, ranks, _ = curated(lake, "rep_rankings")
    assert ranks["skipped"] == {"no_owner": 0, "no_close_date": 0}
    engagement, manifest, _ = curated(lake, "account_engagement")
    assert manifest["row_count"] == len(engagement) > 0
    assert manifest["events"] == {"events_read": 0, "duplicate_events": 0, "events_distinct": 0,
                                  "events_matched": 0, "events_unmatched_account": 0}
    assert all(r["events_total"] == 0 and r["open_opportunities"] == 0 for r in engagement.values())


def test_events_of_a_lake_without_live_accounts_are_all_counted_as_unmatched(spark, tmp_path):
    """The event counts are measured in the same pass as the output; with no live account the
    output is empty, and the events must still be read, counted and reported as unmatched."""
    import shutil

    root = tmp_path / "lake"
    lake = w.build_lake(root)
    shutil.rmtree(root / catalog.get("salesforce.Account").lake_path)
    for name in ("conformed_customers", "opportunity_enrichment", "account_engagement"):
        w.load_job(name).run(spark, str(root), w.RUN_DS)
    rows, manifest, _ = curated(lake, "account_engagement")
    read = w.event_counts()
    assert rows == {} and manifest["row_count"] == 0
    assert manifest["events"] == {"events_read": read["events_read"], "duplicate_events": 1,
                                  "events_distinct": read["events_distinct"], "events_matched": 0,
                                  "events_unmatched_account": read["events_distinct"]}


def test_a_job_whose_input_is_not_committed_fails_clearly(spark, tmp_path, capsys):
    root = tmp_path / "lake"
    w.build_lake(root)
    rep = w.load_job("rep_rankings")
    with pytest.raises(rep.lib.JobError, match="curated.opportunities ds=2024-03-31 is not committed: run its job"):
        rep.run(spark, str(root), w.RUN_DS)
    assert rep.lib.job_main(rep.JOB, rep.run, "", ["--lake", str(root), "--ds", w.RUN_DS]) == 2
    assert "is not committed" in capsys.readouterr().err
    assert rep.lib.job_main(rep.JOB, rep.run, "", ["--lake", "s3://nowhere/lake", "--ds", w.RUN_DS]) == 2
    assert "hadoop-aws" in capsys.readouterr().err
    assert not spark.sparkContext._jsc.sc().isStopped()  # job_main left the caller's session alone


def test_all_curated_names_the_job_whose_input_differs_from_its_commit_record(spark, tmp_path, capsys):
    from support.lake_faults import drop_rows

    root = tmp_path / "lake"
    w.build_lake(root)
    drop_rows(Lake(str(root)), catalog.get("salesforce.Opportunity").lake_path, w.DS1, 1)
    every = w.load_job("all_curated")
    argv = ["--lake", str(root), "--ds", w.RUN_DS]
    assert every.lib.job_main(every.JOB, every.run, "", argv) == 2  # exit 2: a data problem, not retried
    err = capsys.readouterr().err
    assert "all_curated: error: opportunity_enrichment: raw.salesforce.Opportunity ds=2024-03-30: " in err, err


def test_the_curated_gate_agrees_and_catches_counts_that_do_not_add_up(world, warehouse_conn):
    lake, _ = world
    res = Resources(lake=lake, warehouse=warehouse_conn)
    expected = expected_curated_keys(lake, w.RUN_DS)
    assert {k: len(v) for k, v in expected.items()} == {k: len(v) for k, v in w.expected().items()}
    results = gate_curated(res, w.RUN_DS)
    assert all(r["success"] for r in results) and len(results) == 2 * len(CURATED)

    path = "curated/conformed_customers"
    manifest = lake.read_manifest(path, w.RUN_DS)
    tampered = {**manifest, "resolution_counts": {**manifest["resolution_counts"], "exact": 1}}
    lake.write_manifest(path, w.RUN_DS, tampered)
    try:
        with pytest.raises(DataProblem, match="manifest_resolution_counts_add_up observed 8 expected 9"):
            gate_curated(res, w.RUN_DS)
    finally:
        lake.write_manifest(path, w.RUN_DS, manifest)
    import psycopg

    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        details = conn.execute("SELECT details FROM ops.ledger WHERE ds = %s AND dataset = 'order_links' "
                               "AND hop = 'curated'", (w.RUN_DS,)).fetchone()[0]
    details = details if isinstance(details, dict) else json.loads(details)
    assert details["link_counts"] == {"opportunity_ref": 4, "unlinked": 3}


def test_a_job_killed_before_its_manifests_leaves_the_previous_versions_whole(spark, tmp_path, monkeypatch):
    """Curated from Spark: a re-run whose files are written but whose manifests are not leaves
    both outputs of opportunity_enrichment at their previous version, whole."""
    from support.lake_faults import Killed, assert_previous_version_whole, kill_before_manifest, snapshot

    root = tmp_path / "lake"
    lake = w.build_lake(root)
    for job in ("conformed_customers", "opportunity_enrichment"):
        w.load_job(job).run(spark, str(root), w.RUN_DS)
    outputs = ("opportunities", "order_links")
    before = {name: snapshot(lake, f"curated/{name}", w.RUN_DS) for name in outputs}
    kill_before_manifest(monkeypatch, "curated/opportunities")  # the first of the two commits
    with pytest.raises(Killed):
        w.load_job("opportunity_enrichment").run(spark, str(root), w.RUN_DS)
    for name in outputs:
        assert_previous_version_whole(lake, f"curated/{name}", w.RUN_DS, before[name], KEYS[name])
