"""The simulator's injected faults and data scenarios, through the real simple-salesforce client."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.util import Usage

from tally.sources.salesforce.auth import VerifyingSession, connect
from tally_local.sfsim import (
    Credentials,
    Faults,
    SalesforceStore,
    generate_credentials,
    scenarios,
    start_in_thread,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
N_OPPS = 40


def opportunity(i: int) -> dict:
    return {
        "Id": f"006SIM{i:012d}",
        "Name": f"Deal {i}",
        "AccountId": f"001SIM{i:012d}",
        "StageName": "Prospecting",
        "Amount": Decimal("1234.56") + i,
        "Probability": 10.0,
        "CloseDate": date(2026, 12, 1),
        "IsClosed": False,
        "IsWon": False,
        "IsDeleted": False,
        "CreatedDate": T0,
        "SystemModstamp": T0 + timedelta(minutes=i),
    }


def seed(store: SalesforceStore) -> None:
    store.upsert(
        "User", [{"Id": f"005SIM{i:012d}", "Name": f"Rep {i}", "SystemModstamp": T0} for i in range(3)]
    )
    store.upsert("Opportunity", (opportunity(i) for i in range(N_OPPS)))
    store.upsert(
        "DatedConversionRate",
        [
            {
                "Id": "04wSIM000000000001",
                "IsoCode": "EUR",
                "ConversionRate": 0.9,
                "StartDate": date(2026, 1, 1),
                "SystemModstamp": T0,
            }
        ],
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("sfsim-faults") / "sf.db"
    store = SalesforceStore(path)
    seed(store)
    creds = generate_credentials()
    server, url = start_in_thread(path, creds)
    yield SimpleNamespace(server=server, url=url, creds=creds, store=store, ca=server.certfile)
    server.stop()


@pytest.fixture(autouse=True)
def no_faults_afterwards(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").server.set_faults(Faults())


@pytest.fixture
def sf(sim) -> Salesforce:
    return connect(sim.url, asdict(sim.creds), verify=sim.ca)


def ping(sf: Salesforce) -> None:
    sf.query("SELECT Id FROM User LIMIT 1")


# --- Faults value -----------------------------------------------------------------------------


def test_faults_round_trip_json_and_validate():
    faults = Faults(
        rate_limit_after=3,
        describe_drift={"Opportunity": {"add": [{"name": "Region__c", "type": "string"}]}},
    )
    again = Faults.from_json(faults.to_json())
    assert again == faults
    assert again.describe_drift == {
        "Opportunity": {"add": [{"name": "Region__c", "type": "string"}], "remove": [], "retype": {}}
    }
    with pytest.raises(ValueError, match="unknown fault setting"):
        Faults.from_dict({"rate_limit": 3})
    with pytest.raises(ValueError, match="rate_limit_after"):
        Faults(rate_limit_after=-1)
    with pytest.raises(ValueError, match="errors_5xx_status"):
        Faults(errors_5xx_status=404)
    with pytest.raises(ValueError, match="type must be one of"):
        Faults(describe_drift={"Opportunity": {"retype": {"Amount": "money"}}})


def test_drift_naming_unknown_things_is_refused(sim):
    for drift, message in [
        ({"Lead": {"remove": ["Name"]}}, "unknown sObject"),
        ({"Opportunity": {"remove": ["Bogus"]}}, "no such field"),
        ({"Opportunity": {"remove": ["Id"]}}, "cannot remove Opportunity.Id"),
        ({"Opportunity": {"retype": {"IsDeleted": "string"}}}, "cannot retype"),
        ({"Opportunity": {"add": [{"name": "Amount", "type": "string"}]}}, "it exists"),
    ]:
        with pytest.raises(ValueError, match=message):
            sim.server.set_faults(Faults(describe_drift=drift))
    assert sim.server.faults == Faults()  # a refused setting changes nothing


# --- faults through the client ----------------------------------------------------------------


def test_rate_limit_then_recovery(sim, sf):
    sim.server.set_faults(Faults(rate_limit_after=2, rate_limit_calls=2))
    ping(sf)
    ping(sf)
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as info:
            ping(sf)
        assert info.value.status == 403
        assert info.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
    ping(sf)
    assert sim.server.counters()["api_calls_seen"] == 5
    assert sim.server.counters()["api_calls_admitted"] == 3  # refused calls use no quota


def test_session_expiry_then_relogin(sim, sf):
    other = connect(sim.url, asdict(sim.creds), verify=sim.ca)
    sim.server.set_faults(Faults(expire_session_after=1))
    ping(sf)
    with pytest.raises(SalesforceExpiredSession) as info:
        ping(sf)
    assert info.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    with pytest.raises(SalesforceExpiredSession):
        ping(other)  # every session that existed is gone
    again = connect(sim.url, asdict(sim.creds), verify=sim.ca)
    for _ in range(3):
        ping(again)  # expiry fires once


@pytest.mark.parametrize(("status", "code"), [(503, "SERVER_UNAVAILABLE"), (500, "UNKNOWN_EXCEPTION")])
def test_5xx_burst_then_recovery(sim, sf, status, code):
    sim.server.set_faults(Faults(errors_5xx_after=1, errors_5xx_count=2, errors_5xx_status=status))
    ping(sf)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as info:
            ping(sf)
        assert info.value.status == status
        [error] = info.value.content
        assert error["errorCode"] == code and error["message"]
    ping(sf)


def test_connection_reset_then_recovery(sim, sf, caplog):
    sim.server.set_faults(Faults(reset_after=1, reset_count=2))
    ping(sf)
    with caplog.at_level("INFO", logger="tally_local.sfsim"):
        for _ in range(2):
            with pytest.raises(requests.ConnectionError):
                ping(sf)
    ping(sf)
    resets = [r.getMessage() for r in caplog.records if " RESET " in r.getMessage()]
    assert len(resets) == 2 and all('"GET /services/data/v62.0/query/"' in line for line in resets)


def test_every_faulted_response_is_logged_once(sim, sf, caplog):
    sim.server.set_faults(
        Faults(errors_5xx_after=0, errors_5xx_count=1, rate_limit_after=1, rate_limit_calls=1)
    )
    with caplog.at_level("INFO", logger="tally_local.sfsim"):
        with pytest.raises(SalesforceGeneralError):
            ping(sf)
        with pytest.raises(SalesforceRefusedRequest):
            ping(sf)
    lines = [r.getMessage() for r in caplog.records if "/services/data/" in r.getMessage()]
    assert len(lines) == 2
    assert '" 503 ' in lines[0] and "call=1" in lines[0]
    assert '" 403 ' in lines[1] and "call=2" in lines[1]


def test_limit_info_header_and_limits(sim, sf):
    sim.server.set_faults(Faults(api_usage=14990, api_daily_max=15000))
    ping(sf)
    assert sf.api_usage["api-usage"] == Usage(14991, 15000)
    limits = sf.limits()["DailyApiRequests"]
    assert limits == {"Max": 15000, "Remaining": 15000 - 14992}
    response = requests.get(
        f"{sim.url}/services/data/v62.0/sobjects",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        verify=sim.ca,
    )
    assert response.headers["Sforce-Limit-Info"] == "api-usage=14993/15000"
    sim.server.set_faults(Faults(api_usage=14999, api_daily_max=15000, rate_limit_after=2))
    ping(sf)
    ping(sf)
    assert sf.api_usage["api-usage"] == Usage(15001, 15000)  # a soft limit, like Salesforce's
    with pytest.raises(SalesforceRefusedRequest):
        ping(sf)


def test_page_size_fault(sim, sf):
    sim.server.set_faults(Faults(page_size=7))
    first = sf.query("SELECT Id FROM Opportunity")
    assert len(first["records"]) == 7 and first["nextRecordsUrl"].endswith("-7")
    assert len(sf.query_all("SELECT Id FROM Opportunity")["records"]) == N_OPPS


def test_fault_counters_are_thread_safe(sim):
    sim.server.set_faults(Faults(rate_limit_after=30, rate_limit_calls=25))
    sessions = [connect(sim.url, asdict(sim.creds), verify=sim.ca) for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(sf: Salesforce) -> None:
        for _ in range(20):
            try:
                ping(sf)
                result = "ok"
            except SalesforceRefusedRequest:
                result = "refused"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 80 and outcomes.count("refused") == 25
    assert sim.server.counters() == {
        "api_calls_seen": 80,
        "api_calls_admitted": 55,
        "api_usage": 55,
        "api_daily_max": 15000,
    }


def test_describe_drift_add_remove_retype(sim, sf):
    drift = {
        "Opportunity": {
            "add": [{"name": "Region__c", "type": "string"}, {"name": "Score__c", "type": "double"}],
            "remove": ["Probability"],
            "retype": {"Amount": "string", "IsWon": "string"},
        }
    }
    sim.server.set_faults(Faults(describe_drift=drift))
    types = {f["name"]: f["type"] for f in sf.Opportunity.describe()["fields"]}
    assert "Probability" not in types
    assert (types["Region__c"], types["Score__c"], types["Amount"], types["IsWon"]) == (
        "string",
        "double",
        "string",
        "string",
    )

    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query("SELECT Id, Probability FROM Opportunity")
    [error] = info.value.content
    assert error["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Probability' on entity 'Opportunity'" in error["message"]

    [record] = sf.query(
        "SELECT Id, Region__c, Score__c, Amount, IsWon FROM Opportunity WHERE Region__c = 'Region__c-0007'"
    )["records"]
    assert dict(record, attributes=None) == {
        "attributes": None,
        "Id": "006SIM000000000007",
        "Region__c": "Region__c-0007",
        "Score__c": None,
        "Amount": "1241.56",
        "IsWon": "false",
    }
    # literals must have the new type's kind; filters and ORDER BY see the converted value
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FROM Opportunity WHERE Amount > 5")
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE Amount = '1234.56'")["totalSize"] == 1
    ordered = sf.query("SELECT Region__c FROM Opportunity ORDER BY Region__c DESC LIMIT 1")["records"]
    assert ordered[0]["Region__c"] == "Region__c-0039"

    sim.server.set_faults(Faults(describe_drift={"Opportunity": {"retype": {"Amount": "int"}}}))
    [record] = sf.query("SELECT Amount, Probability FROM Opportunity WHERE Name = 'Deal 7'")["records"]
    assert (record["Amount"], record["Probability"]) == (None, 10.0)  # 1241.56 is no int

    sim.server.set_faults(Faults())
    [record] = sf.query("SELECT Amount, Probability FROM Opportunity WHERE Name = 'Deal 7'")["records"]
    assert (record["Amount"], record["Probability"]) == (1241.56, 10.0)


# --- admin API --------------------------------------------------------------------------------


def test_admin_api_needs_the_token(sim, sf):
    admin = f"{sim.url}/__admin"
    good = {"X-Sfsim-Admin-Token": sim.creds.admin_token}
    for headers in ({}, {"X-Sfsim-Admin-Token": "wrong"}):
        assert requests.get(f"{admin}/faults", headers=headers, verify=sim.ca).status_code == 403
        response = requests.put(
            f"{admin}/faults", data='{"rate_limit_after": 0}', headers=headers, verify=sim.ca
        )
        assert response.status_code == 403
        assert requests.post(f"{admin}/reset", headers=headers, verify=sim.ca).status_code == 403
    assert sim.server.faults == Faults()

    response = requests.put(
        f"{admin}/faults",
        data=json.dumps({"rate_limit_after": 1, "rate_limit_calls": 1}),
        headers=good,
        verify=sim.ca,
    )
    assert response.status_code == 200 and response.json()["rate_limit_after"] == 1
    assert sim.server.faults == Faults(rate_limit_after=1, rate_limit_calls=1)
    assert (
        requests.get(f"{admin}/faults", headers=good, verify=sim.ca).json()
        == Faults(rate_limit_after=1, rate_limit_calls=1).to_dict()
    )
    ping(sf)
    with pytest.raises(SalesforceRefusedRequest):
        ping(sf)
    counters = requests.get(f"{admin}/counters", headers=good, verify=sim.ca).json()
    assert counters["api_calls_seen"] == 2 and counters["api_calls_admitted"] == 1
    assert requests.post(f"{admin}/reset", headers=good, verify=sim.ca).json()["api_calls_seen"] == 0
    ping(sf)  # call 1 again
    with pytest.raises(SalesforceRefusedRequest):
        ping(sf)

    bad = requests.put(f"{admin}/faults", data='{"rate_limit": 1}', headers=good, verify=sim.ca)
    assert bad.status_code == 400 and "unknown fault setting" in bad.json()["error"]
    bad = requests.put(f"{admin}/faults", data="{nope", headers=good, verify=sim.ca)
    assert bad.status_code == 400
    assert requests.put(f"{admin}/faults", data="{}", headers=good, verify=sim.ca).status_code == 200
    assert sim.server.faults == Faults()


def test_old_credentials_without_admin_token_disable_the_admin_api(tmp_path):
    creds = generate_credentials()
    old = {k: v for k, v in asdict(creds).items() if k != "admin_token"}
    (tmp_path / "creds.json").write_text(json.dumps(old))
    assert Credentials.coerce(tmp_path / "creds.json").admin_token == ""
    server, url = start_in_thread(tmp_path / "sf.db", tmp_path / "creds.json")
    try:
        sf = connect(url, old, verify=server.certfile)
        ping(sf)
        response = requests.get(
            f"{url}/__admin/faults", headers={"X-Sfsim-Admin-Token": ""}, verify=server.certfile
        )
        assert response.status_code == 403 and "disabled" in response.json()["error"]
    finally:
        server.stop()


def test_faults_at_construction(tmp_path):
    creds = generate_credentials()
    server, url = start_in_thread(
        tmp_path / "sf.db", creds, faults=Faults(rate_limit_after=0, rate_limit_calls=1)
    )
    try:
        sf = Salesforce(
            instance_url=url,
            session_id=server.new_session(),
            session=VerifyingSession(server.certfile),
            version="62.0",
        )
        with pytest.raises(SalesforceRefusedRequest):
            ping(sf)
        ping(sf)
    finally:
        server.stop()


# --- data scenarios ---------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "sf.db"
    store = SalesforceStore(path)
    seed(store)
    creds = generate_credentials()
    server, url = start_in_thread(path, creds)
    yield SimpleNamespace(store=store, sf=connect(url, asdict(creds), verify=server.certfile))
    server.stop()


def rows(sf: Salesforce, soql: str, *, deleted: bool = False) -> dict[str, dict]:
    return {r["Id"]: r for r in sf.query_all(soql, include_deleted=deleted)["records"]}


def test_delete_undelete_purge(world):
    store, sf = world.store, world.sf
    soql = "SELECT Id, IsDeleted, SystemModstamp FROM Opportunity"
    ids = [opportunity(i)["Id"] for i in (3, 4, 5)]
    at = datetime(2026, 11, 5, 12, 0, 0, 250000, tzinfo=UTC)
    assert scenarios.delete(store, "Opportunity", ids, at) == 3

    assert set(ids).isdisjoint(rows(sf, soql))
    everything = rows(sf, soql, deleted=True)
    assert len(everything) == N_OPPS
    assert all(everything[i]["IsDeleted"] is True for i in ids)
    assert {everything[i]["SystemModstamp"] for i in ids} == {"2026-11-05T12:00:00.250+0000"}
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == N_OPPS - 3

    later = at + timedelta(hours=1)
    assert scenarios.undelete(store, "Opportunity", ids[:1], later) == 1
    back = rows(sf, soql)[ids[0]]
    assert back["IsDeleted"] is False and back["SystemModstamp"] == "2026-11-05T13:00:00.250+0000"

    assert scenarios.purge(store, "Opportunity", ids[1:]) == 2
    everything = rows(sf, soql, deleted=True)
    assert len(everything) == N_OPPS - 2 and set(ids[1:]).isdisjoint(everything)

    for obj, key in (("User", "005SIM000000000001"), ("DatedConversionRate", "04wSIM000000000001")):
        with pytest.raises(ValueError, match="no IsDeleted"):
            scenarios.delete(store, obj, [key], at)
        with pytest.raises(ValueError, match="no IsDeleted"):
            scenarios.undelete(store, obj, [key], at)
    with pytest.raises(KeyError, match="006SIM999"):
        scenarios.delete(store, "Opportunity", ["006SIM999999999999"], at)
    with pytest.raises(KeyError):
        scenarios.undelete(store, "Opportunity", ids[1:2], at)  # purged rows cannot come back
    assert scenarios.purge(store, "User", "005SIM000000000002") == 1  # no recycle bin: hard delete
    assert "005SIM000000000002" not in rows(sf, "SELECT Id FROM User")


def test_touch_same_second_makes_a_tie(world):
    store, sf = world.store, world.sf
    ids = [opportunity(i)["Id"] for i in range(10, 20)]
    tie = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    assert scenarios.touch_same_second(store, "Opportunity", ids, tie, StageName="Negotiation") == 10
    soql = "SELECT Id, StageName FROM Opportunity WHERE SystemModstamp {op} 2026-11-03T09:30:00Z"
    assert set(rows(sf, soql.format(op="="))) == set(ids)
    assert set(ids).isdisjoint(rows(sf, soql.format(op=">")))  # a strict watermark loses them all
    assert {r["StageName"] for r in rows(sf, soql.format(op=">=")).values()} == {"Negotiation"}


def test_late_commit_lands_behind_the_watermark(world):
    store, sf = world.store, world.sf
    watermark = T0 + timedelta(minutes=N_OPPS)  # an extractor has read everything up to here
    past = T0 + timedelta(minutes=5, seconds=30)
    new = opportunity(1000)
    assert scenarios.late_commit(store, "Opportunity", new, past) == new["Id"]
    changed = opportunity(2)["Id"]
    assert scenarios.late_commit(store, "Opportunity", changed, past, StageName="Closed Won") == changed

    after = rows(sf, f"SELECT Id FROM Opportunity WHERE SystemModstamp > {watermark:%Y-%m-%dT%H:%M:%SZ}")
    assert after == {}  # an incremental read from the watermark misses both
    overlap = watermark - timedelta(minutes=40)
    window = rows(
        sf,
        f"SELECT Id, StageName, SystemModstamp FROM Opportunity WHERE SystemModstamp >= {overlap:%Y-%m-%dT%H:%M:%SZ}",
    )
    assert {new["Id"], changed} <= set(window)
    assert window[changed]["StageName"] == "Closed Won"
    assert window[new["Id"]]["SystemModstamp"] == "2026-11-01T00:05:30.000+0000"
    with pytest.raises(KeyError):
        scenarios.late_commit(store, "Opportunity", "006SIM999999999999", past)
