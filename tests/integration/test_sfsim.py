"""The Salesforce simulator over HTTPS, driven by the real simple-salesforce client."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.util import Usage

from tally.sources.salesforce.auth import (
    SalesforceAuthError,
    VerifyingSession,
    connect,
    login,
    login_client_credentials,
)
from tally_local.sfsim import Faults, SalesforceStore, generate_credentials, read_credentials, start_in_thread

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
N_ACCOUNTS = 2800
N_DELETED = len(range(0, N_ACCOUNTS, 13))
PAGE_SIZE = 500


def account(i: int) -> dict:
    return {
        "Id": f"001SIM{i:012d}",
        "Name": f"Account {i}",
        "BillingCountry": "DE" if i % 2 else None,
        "OwnerId": f"005SIM{i % 20:012d}",
        "IsDeleted": i % 13 == 0,
        "CreatedDate": T0,
        "SystemModstamp": T0 + timedelta(minutes=i),
    }


def opportunity(i: int) -> dict:
    return {
        "Id": f"006SIM{i:012d}",
        "Name": f"Deal {i}",
        "AccountId": f"001SIM{i:012d}",
        "StageName": "Closed Won" if i % 4 == 0 else "Prospecting",
        "Amount": Decimal("1234.56") + i,
        "Probability": 100.0 if i % 4 == 0 else 10.0,
        "CloseDate": date(2026, 12, 1) + timedelta(days=i % 30),
        "IsClosed": i % 4 == 0,
        "IsWon": i % 4 == 0,
        "IsDeleted": False,
        "CreatedDate": T0,
        "SystemModstamp": T0 + timedelta(seconds=i, milliseconds=250),
    }


def seed(store: SalesforceStore) -> None:
    store.upsert(
        "User", [{"Id": f"005SIM{i:012d}", "Name": f"Rep {i}", "SystemModstamp": T0} for i in range(20)]
    )
    store.upsert("Account", (account(i) for i in range(N_ACCOUNTS)))
    store.upsert("Opportunity", (opportunity(i) for i in range(300)))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("sfsim") / "sf.db"
    store = SalesforceStore(path)
    seed(store)
    creds = generate_credentials()
    server, url = start_in_thread(path, creds, page_size=PAGE_SIZE)
    yield SimpleNamespace(server=server, url=url, creds=creds, store=store, ca=server.certfile)
    server.stop()


@pytest.fixture
def sf(sim) -> Salesforce:
    return connect(sim.url, asdict(sim.creds), verify=sim.ca)


def live_ids(store: SalesforceStore, name: str) -> set[str]:
    return {r["Id"] for r in store.all(name) if not r.get("IsDeleted")}


# --- login ------------------------------------------------------------------------------------


def test_soap_login(sim):
    c = sim.creds
    session_id, instance_url = login(
        sim.url, c.username, c.password, c.security_token, session=VerifyingSession(sim.ca)
    )
    assert session_id.startswith("00D") and "!" in session_id
    assert instance_url == sim.url


@pytest.mark.parametrize("field", ["password", "security_token", "username"])
def test_wrong_credentials_are_invalid_login(sim, field):
    creds = {**asdict(sim.creds), field: "wrong-" + getattr(sim.creds, field)}
    with pytest.raises(SalesforceAuthError) as info:
        connect(sim.url, creds, verify=sim.ca)
    err = info.value
    assert isinstance(err, SalesforceAuthenticationFailed)
    assert err.code == "INVALID_LOGIN"
    assert err.auth_message == "Invalid username, password, security token; or user locked out."
    for secret in (creds["password"], creds["security_token"]):
        assert secret not in str(err) and secret not in repr(err)


def test_soap_fault_is_salesforces(sim):
    body = "<x:Envelope xmlns:x='http://schemas.xmlsoap.org/soap/envelope/'/>"
    response = requests.post(f"{sim.url}/services/Soap/u/62.0", data=body, verify=sim.ca)
    assert response.status_code == 500 and "<faultcode>soapenv:Client</faultcode>" in response.text
    response = requests.post(
        f"{sim.url}/services/Soap/u/62.0",
        data="<e xmlns:n1='urn:partner.soap.sforce.com'><n1:login><n1:username>u</n1:username>"
        "<n1:password>p</n1:password></n1:login></e>",
        verify=sim.ca,
    )
    assert response.status_code == 500
    assert "<faultcode>sf:INVALID_LOGIN</faultcode>" in response.text
    assert (
        "<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>"
        in response.text
    )


def test_client_credentials(sim):
    session = VerifyingSession(sim.ca)
    token, instance_url = login_client_credentials(
        sim.url, sim.creds.client_id, sim.creds.client_secret, session
    )
    assert instance_url == sim.url
    sf = Salesforce(instance_url=instance_url, session_id=token, session=session, version="62.0")
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 20

    with pytest.raises(SalesforceAuthError) as info:
        login_client_credentials(sim.url, sim.creds.client_id, "nope", session)
    assert (info.value.code, info.value.auth_message) == ("invalid_client", "invalid client credentials")
    response = requests.post(
        f"{sim.url}/services/oauth2/token", data={"grant_type": "client_credentials"}, verify=sim.ca
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}


def test_invalid_or_expired_session(sim, sf):
    bogus = Salesforce(instance_url=sim.url, session_id="00Dxx!bogus", session=VerifyingSession(sim.ca))
    with pytest.raises(SalesforceExpiredSession) as info:
        bogus.query("SELECT Id FROM User")
    assert info.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]

    sf.query("SELECT Id FROM User LIMIT 1")
    sim.server.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM User LIMIT 1")


def test_unauthenticated_endpoints(sim):
    assert requests.get(f"{sim.url}/health", verify=sim.ca).text == "ok"
    versions = requests.get(f"{sim.url}/services/data/", verify=sim.ca).json()
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    response = requests.get(f"{sim.url}/services/data/v62.0/limits", verify=sim.ca)
    assert response.status_code == 401 and "Sforce-Limit-Info" not in response.headers


# --- queries ----------------------------------------------------------------------------------


def test_query_all_follows_next_records_url_and_returns_every_row_once(sim, sf):
    first = sf.query("SELECT Id, Name FROM Account")
    assert first["done"] is False and len(first["records"]) == PAGE_SIZE
    assert re.fullmatch(r"/services/data/v62\.0/query/01g\w{15}-500", first["nextRecordsUrl"])

    result = sf.query_all("SELECT Id, Name FROM Account")
    ids = [r["Id"] for r in result["records"]]
    assert len(ids) == len(set(ids)) == len(live_ids(sim.store, "Account")) > 2400
    assert set(ids) == live_ids(sim.store, "Account")
    assert result["records"][0]["attributes"]["type"] == "Account"
    assert result["records"][0]["attributes"]["url"] == f"/services/data/v62.0/sobjects/Account/{ids[0]}"


@pytest.mark.parametrize(("batch", "expected"), [(200, 200), (50, 200), (5000, PAGE_SIZE)])
def test_batch_size_header(sf, batch, expected):
    result = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": f"batchSize={batch}"})
    assert len(result["records"]) == expected
    assert result["nextRecordsUrl"].endswith(f"-{expected}")


def test_query_hides_deleted_rows_and_query_all_shows_them(sim, sf):
    live = sf.query_all("SELECT Id, IsDeleted FROM Account")["records"]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)["records"]
    assert len(everything) == N_ACCOUNTS
    assert not any(r["IsDeleted"] for r in live)
    assert {r["Id"] for r in everything if r["IsDeleted"]} == {
        account(i)["Id"] for i in range(0, N_ACCOUNTS, 13)
    }


def test_count(sf):
    assert sf.query("SELECT COUNT() FROM Account") == {
        "totalSize": N_ACCOUNTS - N_DELETED,
        "done": True,
        "records": [],
    }
    assert sf.query("SELECT COUNT() FROM Account", include_deleted=True)["totalSize"] == N_ACCOUNTS
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE IsWon = true")["totalSize"] == 75


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-01T10:00:00Z", "2026-11-01T20:00:00Z"),
        ("2026-11-01T11:00:00+01:00", "2026-11-01T20:00:00.000+0000"),
    ],
)
def test_system_modstamp_window(sf, start, end):
    soql = (
        f"SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp >= {start} AND SystemModstamp < {end}"
    )
    records = sf.query_all(soql)["records"]
    expected = {account(i)["Id"] for i in range(600, 1200) if i % 13}
    assert {r["Id"] for r in records} == expected
    assert min(r["SystemModstamp"] for r in records) == "2026-11-01T10:00:00.000+0000"


def test_field_values_on_the_wire(sf):
    [record] = sf.query(
        "SELECT Id, Amount, Probability, CloseDate, IsWon, SystemModstamp, Name FROM Opportunity WHERE Name = 'Deal 8'"
    )["records"]
    assert record.pop("attributes") == {
        "type": "Opportunity",
        "url": f"/services/data/v62.0/sobjects/Opportunity/{record['Id']}",
    }
    assert dict(record) == {
        "Id": "006SIM000000000008",
        "Amount": 1242.56,
        "Probability": 100.0,
        "CloseDate": "2026-12-09",
        "IsWon": True,
        "SystemModstamp": "2026-11-01T00:00:08.250+0000",
        "Name": "Deal 8",
    }
    [user] = sf.query("SELECT Email, IsActive FROM User WHERE Name = 'Rep 1'")["records"]
    assert (user["Email"], user["IsActive"]) == (None, None)


def test_order_by_and_limit(sf):
    records = sf.query("SELECT Id FROM Opportunity ORDER BY SystemModstamp DESC LIMIT 3")["records"]
    assert [r["Id"] for r in records] == [opportunity(i)["Id"] for i in (299, 298, 297)]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead", "INVALID_TYPE"),
        ("SELECT Id, Bogus__c FROM Account", "INVALID_FIELD"),
    ],
)
def test_bad_queries(sf, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(soql)
    [error] = info.value.content
    assert error["errorCode"] == code and "ERROR at Row:1:Column:" in error["message"]


def test_invalid_query_locator(sf):
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query_more("01gAAAAAAAAAAAAAAA-500")
    assert info.value.content == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


def test_cursor_is_a_snapshot(tmp_path):
    path = tmp_path / "sf.db"
    store = SalesforceStore(path)
    store.upsert("Opportunity", (opportunity(i) for i in range(1000)))
    creds = generate_credentials()
    server, url = start_in_thread(path, creds, page_size=300)
    try:
        sf = connect(url, asdict(creds), verify=server.certfile)
        first = sf.query("SELECT Id, Name FROM Opportunity ORDER BY Id")
        # Another writer renames everything, deletes a row and adds rows mid-pagination.
        writer = SalesforceStore(path)
        writer.upsert("Opportunity", ({"Id": opportunity(i)["Id"], "Name": "renamed"} for i in range(1000)))
        writer.upsert("Opportunity", [{"Id": opportunity(999)["Id"], "IsDeleted": True}])
        writer.upsert("Opportunity", (opportunity(i) for i in range(1000, 1100)))
        records, page = list(first["records"]), first
        while not page["done"]:
            page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
            assert page["totalSize"] == 1000
            records.extend(page["records"])
        assert [r["Id"] for r in records] == [opportunity(i)["Id"] for i in range(1000)]
        assert "renamed" not in {r["Name"] for r in records}
        assert sf.query("SELECT COUNT() FROM Opportunity WHERE Name = 'renamed'")["totalSize"] == 999
    finally:
        server.stop()


# --- describe, limits -------------------------------------------------------------------------


def test_describe(sf):
    describe = sf.Opportunity.describe()
    assert describe["name"] == "Opportunity" and describe["queryable"] is True
    types = {f["name"]: f["type"] for f in describe["fields"]}
    assert types == {
        "Id": "id",
        "Name": "string",
        "AccountId": "reference",
        "OwnerId": "reference",
        "StageName": "string",
        "Amount": "currency",
        "Probability": "percent",
        "CloseDate": "date",
        "IsClosed": "boolean",
        "IsWon": "boolean",
        "CurrencyIsoCode": "string",
        "IsDeleted": "boolean",
        "CreatedDate": "datetime",
        "SystemModstamp": "datetime",
    }
    fields = {f["name"]: f for f in describe["fields"]}
    assert fields["Id"]["nillable"] is False and fields["Name"]["nillable"] is True
    assert fields["OwnerId"]["referenceTo"] == ["User"]
    assert {s["name"] for s in sf.describe()["sobjects"]} == {
        "User",
        "Account",
        "Opportunity",
        "Contact",
        "OpportunityHistory",
        "DatedConversionRate",
        "Task",
    }


def test_limits_and_usage_header(sf):
    before = sf.limits()["DailyApiRequests"]
    assert before["Max"] == 15000
    sf.query("SELECT Id FROM User LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert usage.total == 15000 and usage.used == 15000 - before["Remaining"] + 1


# --- store ------------------------------------------------------------------------------------


def test_store_round_trip(tmp_path):
    store = SalesforceStore(tmp_path / "sf.db")
    original = opportunity(1) | {"OwnerId": None, "CurrencyIsoCode": None}
    store.upsert("Opportunity", [original])
    store.upsert(
        "Opportunity",
        [{"Id": original["Id"], "StageName": "Closed Lost", "SystemModstamp": "2026-11-02T00:00:00Z"}],
    )
    [row] = store.all("Opportunity")
    assert row == original | {"StageName": "Closed Lost", "SystemModstamp": datetime(2026, 11, 2, tzinfo=UTC)}
    assert store.count("Opportunity") == 1
    with pytest.raises(ValueError, match="unknown field"):
        store.upsert("Opportunity", [{"Id": "x", "Bogus": 1}])
    with pytest.raises(ValueError, match="naive"):
        store.upsert("Opportunity", [{"Id": "x", "SystemModstamp": datetime(2026, 1, 1)}])
    with pytest.raises(ValueError, match="cannot store"):
        store.upsert("Opportunity", [{"Id": "x", "IsWon": "yes"}])
    store.reset()
    assert store.count("Opportunity") == 0
    with SalesforceStore(tmp_path / "sf.db") as again:  # a second handle on the same file
        assert again.count("Opportunity") == 0


def test_store_with_an_older_layout_opens_and_reset_rebuilds_it(tmp_path):
    import sqlite3

    path = tmp_path / "sf.db"
    with sqlite3.connect(path) as conn:  # Opportunity as an older catalog had it
        conn.execute('CREATE TABLE "Opportunity" ("Id" TEXT PRIMARY KEY, "Name" TEXT)')
        conn.execute("INSERT INTO \"Opportunity\" VALUES ('006SIM000000000001', 'old')")
    store = SalesforceStore(path)  # opening works (so that reset() can be called) ...
    assert "table Opportunity has columns ['Id', 'Name']" in store.schema_error
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        store.count("Opportunity")  # ... but data calls refuse
    other = SalesforceStore(path)
    other.reset()  # another handle (or process) rebuilds the file
    assert store.schema_error is None
    assert store.count("Opportunity") == 0 and store.count("Task") == 0


# --- CLI --------------------------------------------------------------------------------------


def test_cli_serves_generates_its_files_and_never_logs_secrets(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = {name: tmp_path / name for name in ("sf.db", "cert.pem", "key.pem", "creds.json", "faults.json")}
    SalesforceStore(files["sf.db"]).upsert("User", [{"Id": "005SIM000000000001", "SystemModstamp": T0}])
    files["faults.json"].write_text(Faults(api_usage=100, api_daily_max=5000).to_json())
    cmd = [sys.executable, "-m", "tally_local.sfsim", "--port", str(port), "--page-size", "300"]
    for flag, name in (
        ("--db", "sf.db"),
        ("--cert", "cert.pem"),
        ("--key", "key.pem"),
        ("--credentials", "creds.json"),
        ("--faults", "faults.json"),
    ):
        cmd += [flag, str(files[name])]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        url = f"https://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(f"{url}/health", verify=str(files["cert.pem"]), timeout=1).text == "ok":
                    break
            except OSError:  # not listening yet, or the certificate is not written yet
                time.sleep(0.1)
        else:
            pytest.fail("simulator did not come up")
        creds = read_credentials(files["creds.json"])
        assert files["creds.json"].stat().st_mode & 0o077 == 0
        sf = connect(url, asdict(creds), verify=files["cert.pem"])
        assert sf.query("SELECT Id FROM User")["records"][0]["Id"] == "005SIM000000000001"
        assert sf.api_usage["api-usage"] == Usage(101, 5000)  # from --faults
        with pytest.raises(SalesforceAuthError):
            connect(url, asdict(creds) | {"password": "wrong"}, verify=files["cert.pem"])
        # out-of-process fault control
        admin = {"X-Sfsim-Admin-Token": creds.admin_token}
        assert creds.admin_token
        faults = {"rate_limit_after": 0, "rate_limit_calls": 1}
        put = requests.put(f"{url}/__admin/faults", json=faults, headers=admin, verify=str(files["cert.pem"]))
        assert put.status_code == 200
        with pytest.raises(SalesforceRefusedRequest):
            sf.query("SELECT Id FROM User")
        assert sf.query("SELECT Id FROM User")["totalSize"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert '"GET /services/data/v62.0/query/" 200' in stderr and "q='SELECT Id FROM User'" in stderr
    assert '"POST /services/Soap/u/62.0" 500' in stderr
    assert '"PUT /__admin/faults" 200' in stderr and '" 403 ' in stderr
    for secret in (
        creds.password,
        creds.security_token,
        creds.client_secret,
        creds.admin_token,
        sf.session_id,
    ):
        assert secret not in stderr
