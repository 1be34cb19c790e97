"""The Salesforce extractor against the simulator, one test per way incremental syncs lose data.

Each test asserts that after the run(s) the landed data, deduplicated to the latest version
per Id, equals the simulator's ground truth for the interval: no loss, no duplicates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tally import catalog, sfid
from tally.core.config import SalesforceConn
from tally.gates.raw import schema_check
from tally.sources.salesforce.client import ResilientSalesforce, RetryPolicy, SalesforceUnavailable
from tally.sources.salesforce.extract import SalesforceOptions, SalesforceSource
from tally.stages.extract import expected_raw_rows
from tally_local.sfsim import SalesforceStore, generate_credentials, scenarios, start_in_thread
from tally_local.sfsim.faults import Faults

pytestmark = pytest.mark.integration

OPP = catalog.SALESFORCE["Opportunity"]
DAY1 = datetime(2026, 6, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY2 + timedelta(days=1)
N = 1500


def opportunity(i: int, modstamp: datetime) -> dict:
    return {
        "Id": sfid.make("006", i), "Name": f"Deal {i}", "AccountId": sfid.make("001", i % 50),
        "OwnerId": sfid.make("005", i % 7), "StageName": "Closed Won" if i % 3 == 0 else "Prospecting",
        "Amount": Decimal(i) + Decimal("0.25"), "Probability": 100.0 if i % 3 == 0 else 10.0,
        "CloseDate": DAY1.date(), "IsClosed": i % 3 == 0, "IsWon": i % 3 == 0, "CurrencyIsoCode": "USD",
        "IsDeleted": False, "CreatedDate": DAY1 - timedelta(days=30), "SystemModstamp": modstamp,
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfsim")
    creds = generate_credentials()
    server, url = start_in_thread(root / "store.db", creds, page_size=2000)
    yield server, url, creds, SalesforceStore(root / "store.db")
    server.stop()


@pytest.fixture
def world(sim, tmp_path):
    """A fresh store (N opportunities spread over DAY1), no faults, counters reset."""
    server, url, creds, store = sim
    store.reset()
    store.upsert("Opportunity", [opportunity(i, DAY1 + timedelta(seconds=i * 50)) for i in range(N)])
    server.set_faults(Faults())
    server.reset_counters()
    conn = SalesforceConn(url, creds.username, creds.password, creds.security_token, ca_bundle=str(server.certfile))
    return server, store, conn


class Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def source(conn, clock=None, **options) -> SalesforceSource:
    policy = options.pop("policy", RetryPolicy(max_attempts=6, base_delay=0.01))
    opts = SalesforceOptions(policy=policy, **options)
    return SalesforceSource(conn, opts, ResilientSalesforce(conn, policy, sleep=clock or Clock(), seed=1))


def landed_latest(lake, up_to: str | None = None) -> dict[str, dict]:
    """Every committed raw partition, deduplicated to the latest version per Id."""
    latest: dict[str, dict] = {}
    for ds in lake.committed(OPP.lake_path, up_to=up_to):
        for row in lake.read_table(OPP.lake_path, ds).to_pylist():
            have = latest.get(row["Id"])
            if have is None or (row["SystemModstamp"], ds) >= (have["SystemModstamp"], have["_ds"]):
                latest[row["Id"]] = {**row, "_ds": ds}
    return latest


def truth(store, before: datetime) -> dict[str, dict]:
    return {r["Id"]: r for r in store.all("Opportunity") if r["SystemModstamp"] < before}


def assert_equal_to_truth(lake, store, before: datetime) -> None:
    got, want = landed_latest(lake), truth(store, before)
    assert set(got) == set(want), f"missing {len(set(want) - set(got))}, extra {len(set(got) - set(want))}"
    for key, row in want.items():
        assert got[key]["SystemModstamp"] == row["SystemModstamp"], key
        assert got[key]["IsDeleted"] == row["IsDeleted"], key
        assert got[key]["Amount"] == row["Amount"], key


def run(src, lake, day: datetime, ds: str | None = None) -> dict:
    return src.extract(lake, OPP, ds or day.date().isoformat(), day, day + timedelta(days=1))


def test_small_pages_follow_next_records_url(world, lake):
    server, store, conn = world
    server.set_faults(Faults(page_size=200))
    m = run(source(conn, page_size=200), lake, DAY1)
    assert m["row_count"] == m["source_count"] == N and m["api"] == "rest"
    assert_equal_to_truth(lake, store, DAY2)


def test_same_second_updates_straddling_the_interval_edge(world, lake):
    server, store, conn = world
    ids = [sfid.make("006", i) for i in range(0, 300)]
    scenarios.touch_same_second(store, "Opportunity", ids[:150], DAY2 - timedelta(seconds=1))
    scenarios.touch_same_second(store, "Opportunity", ids[150:], DAY2)  # exactly on the edge
    src = source(conn)
    run(src, lake, DAY1)
    second = run(src, lake, DAY2)
    # The edge second belongs to day 2 only; day 1's last second is re-read by the overlap.
    assert second["overlap_rows"] >= 150
    assert_equal_to_truth(lake, store, DAY3)


def test_late_commit_with_an_older_modstamp_is_caught_by_the_overlap(world, lake):
    server, store, conn = world
    src = source(conn, overlap=timedelta(minutes=10))
    run(src, lake, DAY1)
    late = opportunity(99_999, DAY2 - timedelta(minutes=3))
    scenarios.late_commit(store, "Opportunity", late, DAY2 - timedelta(minutes=3))
    second = run(src, lake, DAY2)
    assert late["Id"] in {r["Id"] for r in lake.read_table(OPP.lake_path, DAY2.date().isoformat()).to_pylist()}
    assert second["overlap_rows"] >= 1
    assert_equal_to_truth(lake, store, DAY3)


def test_deletes_land_as_tombstones(world, lake):
    server, store, conn = world
    src = source(conn)
    run(src, lake, DAY1)
    gone = [sfid.make("006", i) for i in range(10, 20)]
    scenarios.delete(store, "Opportunity", gone, DAY2 + timedelta(hours=1))
    run(src, lake, DAY2)
    latest = landed_latest(lake)
    assert all(latest[i]["IsDeleted"] for i in gone)
    live = {k for k, r in latest.items() if not r["IsDeleted"]}
    assert live == {k for k, r in truth(store, DAY3).items() if not r["IsDeleted"]}
    assert_equal_to_truth(lake, store, DAY3)


def test_rate_limit_is_retried_with_backoff(world, lake):
    server, store, conn = world
    server.set_faults(Faults(rate_limit_after=3, rate_limit_calls=2, page_size=300))
    clock = Clock()
    src = source(conn, clock, page_size=300)
    m = run(src, lake, DAY1)
    assert src.client.stats.retries == 2 and len(clock.slept) >= 2
    assert m["calls"]["retries"] == 2
    assert_equal_to_truth(lake, store, DAY2)


def test_exhausted_retries_fail_clearly_and_leave_the_last_good_version(world, lake):
    server, store, conn = world
    src = source(conn)
    run(src, lake, DAY1)
    before = lake.read_manifest(OPP.lake_path, DAY1.date().isoformat())
    server.set_faults(Faults(rate_limit_after=4, page_size=300))  # never recovers
    failing = source(conn, page_size=300, policy=RetryPolicy(max_attempts=3, base_delay=0.01))
    with pytest.raises(SalesforceUnavailable, match=r"Opportunity .*gave up after 3 attempts.*REQUEST_LIMIT_EXCEEDED") as info:
        run(failing, lake, DAY1)
    assert "previous version stays committed" in str(info.value) and "What to do" in str(info.value)
    assert lake.read_manifest(OPP.lake_path, DAY1.date().isoformat())["files"] == before["files"]
    assert_equal_to_truth(lake, store, DAY2)


def test_expired_session_logs_in_again_once(world, lake):
    server, store, conn = world
    server.set_faults(Faults(expire_session_after=3, page_size=300))
    src = source(conn, page_size=300)
    run(src, lake, DAY1)
    assert src.client.stats.relogins == 1
    assert_equal_to_truth(lake, store, DAY2)


def test_bursts_of_5xx_and_connection_resets_are_survived(world, lake):
    server, store, conn = world
    server.set_faults(Faults(errors_5xx_after=2, errors_5xx_count=3, reset_after=8, reset_count=2, page_size=200))
    src = source(conn, page_size=200)
    run(src, lake, DAY1)
    assert src.client.stats.retries == 5
    assert_equal_to_truth(lake, store, DAY2)


def test_api_usage_near_the_limit_slows_down(world, lake):
    server, store, conn = world
    server.set_faults(Faults(api_daily_max=1000, api_usage=950, page_size=500))
    clock = Clock()
    src = source(conn, clock, page_size=500)
    run(src, lake, DAY1)
    assert src.client.stats.throttled_seconds > 0 and sum(clock.slept) > 0
    assert src.client.stats.api_usage[1] == 1000


def test_bulk_api_2_lands_the_same_rows_as_rest(world, lake, tmp_path):
    from tally.lake import Lake

    server, store, conn = world
    scenarios.delete(store, "Opportunity", [sfid.make("006", 5)], DAY1 + timedelta(hours=2))
    rest = run(source(conn), lake, DAY1)
    bulk_lake = Lake(str(tmp_path / "bulk"))
    bulk = run(source(conn, bulk_page_records=400, force_bulk=frozenset({"Opportunity"})), bulk_lake, DAY1)
    assert bulk["api"] == "bulk2" and rest["api"] == "rest"
    assert bulk["row_count"] == rest["row_count"] == bulk["source_count"]
    assert bulk["key_checksum"] == rest["key_checksum"]
    assert landed_latest(bulk_lake) == landed_latest(lake)


def test_bulk_is_chosen_automatically_above_the_threshold(world, lake):
    server, store, conn = world
    m = run(source(conn, bulk_threshold=1000), lake, DAY1)
    assert m["api"] == "bulk2"
    assert_equal_to_truth(lake, store, DAY2)


def test_schema_drift_new_field_lands_removed_field_fails_the_gate(world, lake):
    server, store, conn = world
    src = source(conn)
    run(src, lake, DAY1)
    server.set_faults(Faults(describe_drift={"Opportunity": {"add": [{"name": "Region__c", "type": "string"}],
                                                             "remove": ["Probability"]}}))
    m = run(source(conn), lake, DAY2)
    assert m["schema_drift"]["added"] == ["Region__c"] and m["schema_drift"]["removed"] == ["Probability"]
    table = lake.read_table(OPP.lake_path, DAY2.date().isoformat())
    assert "Region__c" in table.column_names
    assert table.column("Probability").null_count == table.num_rows
    result = schema_check("salesforce.Opportunity", m)
    assert not result.success
    assert "Probability" in result.summary() and "source_field_still_exists" in result.summary()


def test_an_added_field_is_a_warning_the_gate_summary_shows(world, lake):
    server, store, conn = world
    run(source(conn), lake, DAY1)
    server.set_faults(Faults(describe_drift={"Opportunity": {"add": [{"name": "Region__c", "type": "string"}]}}))
    m = run(source(conn), lake, DAY2)
    assert m["schema_drift"] == {"added": ["Region__c"], "removed": [], "retyped": {}}
    result = schema_check("salesforce.Opportunity", m)
    assert result.success and result.failed == 0
    assert "source_field_added(Region__c)" in result.summary()
    assert [w["column"] for w in result.warnings] == [["Region__c"]] and not result.failures


def test_a_future_dated_record_lands_in_quarantine_with_a_reason(world, lake):
    """A SystemModstamp after the extraction's clock is in no interval that has ended: it is
    read with every window, set aside with a reason and counted, never landed."""
    server, store, conn = world
    future = opportunity(99_998, datetime(2099, 1, 1, tzinfo=UTC))
    store.upsert("Opportunity", [future])
    src = source(conn)
    for day in (DAY1, DAY2, DAY2):  # a full ds, an incremental one, and its re-run
        m = run(src, lake, day)
        ds = day.date().isoformat()
        q = lake.read_table("quarantine/salesforce/Opportunity", ds).to_pylist()
        assert [(r["Id"], r["reason"]) for r in q] == [(future["Id"], "SystemModstamp in the future")]
        assert q[0]["Name"] == "Deal 99998" and q[0]["SystemModstamp"].startswith("2099-01-01")
        assert m["quarantined"] == 1 and m["quarantine"]["reasons"] == {"SystemModstamp in the future": 1}
        assert m["row_count"] == m["source_count"] - m["quarantined"] == expected_raw_rows(m)
        assert future["Id"] not in {r["Id"] for r in lake.read_table(OPP.lake_path, ds).to_pylist()}
    assert_equal_to_truth(lake, store, DAY3)


def test_wrong_credentials_get_salesforce_error_without_the_password(world, lake):
    from dataclasses import replace

    from tally.sources.salesforce.auth import SalesforceAuthError

    server, store, conn = world
    with pytest.raises(SalesforceAuthError, match="INVALID_LOGIN") as info:
        run(source(replace(conn, password="not-it")), lake, DAY1)
    assert "not-it" not in str(info.value)


def test_oauth_client_credentials_login(world, lake, sim):
    from dataclasses import replace

    server, store, conn = world
    creds = sim[2]
    oauth = replace(conn, username="", password="", security_token="", client_id=creds.client_id,
                    client_secret=creds.client_secret)
    m = run(source(oauth), lake, DAY1)
    assert m["row_count"] == N
