"""Bulk API 2.0 query jobs of the simulator, driven by simple-salesforce's unmodified ``bulk2``."""

from __future__ import annotations

import csv
import io
import math
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
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from tally.sources.salesforce.auth import connect
from tally_local.sfsim import Faults, SalesforceStore, generate_credentials, scenarios, start_in_thread

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)
N_OPPS = 5400
DELETED = set(range(0, N_OPPS, 17))
SOQL = "SELECT Id, Name, Amount, Probability, CloseDate, IsWon, IsDeleted, SystemModstamp, OwnerId FROM Opportunity"
NAMES = ['Deal, "quoted"', "multi\nline", "plain", "ünïcødé"]


def opportunity(i: int) -> dict:
    return {
        "Id": f"006SIM{i:012d}",
        "Name": f"{NAMES[i % 4]} {i}" if i % 5 else None,
        "OwnerId": None if i % 3 else f"005SIM{i % 7:012d}",
        "StageName": "Prospecting",
        "Amount": Decimal("1234.56") + i if i % 11 else None,
        "Probability": 100.0 if i % 4 == 0 else 12.5,
        "CloseDate": date(2026, 12, 1) + timedelta(days=i % 30),
        "IsWon": i % 4 == 0,
        "IsDeleted": i in DELETED,
        "CreatedDate": T0,
        "SystemModstamp": T0 + timedelta(seconds=i, milliseconds=i % 1000),
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    path = tmp_path_factory.mktemp("sfsim-bulk") / "sf.db"
    store = SalesforceStore(path)
    store.upsert("Opportunity", (opportunity(i) for i in range(N_OPPS)))
    creds = generate_credentials()
    server, url = start_in_thread(path, creds)
    yield SimpleNamespace(server=server, url=url, creds=creds, store=store, ca=server.certfile)
    server.stop()


@pytest.fixture(autouse=True)
def no_faults_afterwards(sim):
    yield
    sim.server.set_faults(Faults())


@pytest.fixture
def sf(sim) -> Salesforce:
    return connect(sim.url, asdict(sim.creds), verify=sim.ca)


def parse(pages) -> list[dict]:
    out = []
    for page in pages:
        out.extend(csv.DictReader(io.StringIO(page, newline="")))
    return out


def as_csv(record: dict) -> dict:
    """A REST record as the Bulk CSV spells it."""
    out = {}
    for name, value in record.items():
        if name == "attributes":
            continue
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str) and value.endswith("+0000"):
            value = value[:-5] + "Z"
        out[name] = str(value)
    return out


def api(sim, sf, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}
    return sf.session.request(method, f"{sim.url}/services/data/v62.0/{path}", headers=headers, **kwargs)


# --- the happy path through simple-salesforce -------------------------------------------------


def test_bulk_query_follows_locators_and_equals_rest_query_all(sim, sf):
    pages = list(sf.bulk2.Opportunity.query(SOQL, max_records=1000, wait=0))
    live = N_OPPS - len(DELETED)
    assert len(pages) == math.ceil(live / 1000)
    rows = parse(pages)
    ids = [r["Id"] for r in rows]
    assert len(ids) == len(set(ids)) == live
    rest = sf.query_all(SOQL)["records"]
    assert rows == [as_csv(r) for r in rest]
    assert pages[0].startswith(
        "Id,Name,Amount,Probability,CloseDate,IsWon,IsDeleted,SystemModstamp,OwnerId\n"
    )

    by_id = {r["Id"]: r for r in rows}
    assert by_id["006SIM000000000004"] == {
        "Id": "006SIM000000000004",
        "Name": 'Deal, "quoted" 4',
        "Amount": "1238.56",
        "Probability": "100.0",
        "CloseDate": "2026-12-05",
        "IsWon": "true",
        "IsDeleted": "false",
        "SystemModstamp": "2026-11-01T00:00:04.004Z",
        "OwnerId": "",
    }
    assert by_id["006SIM000000000001"]["Name"] == "multi\nline 1"
    assert by_id["006SIM000000000003"]["Name"] == "ünïcødé 3"
    assert by_id["006SIM000000000005"]["Name"] == ""  # null
    assert '"Deal, ""quoted"" 4"' in pages[0] and ",plain 2," in pages[0]  # quoted as needed


def test_bulk_query_all_includes_deleted_rows(sim, sf):
    rows = parse(sf.bulk2.Opportunity.query_all(SOQL, max_records=2000, wait=0))
    assert len(rows) == N_OPPS
    assert {r["Id"] for r in rows if r["IsDeleted"] == "true"} == {opportunity(i)["Id"] for i in DELETED}


def test_bulk_download_to_files(sim, sf, tmp_path):
    results = sf.bulk2.Opportunity.download(
        "SELECT Id FROM Opportunity WHERE IsWon = true", str(tmp_path), max_records=600, wait=0
    )
    won = [i for i in range(N_OPPS) if i % 4 == 0 and i not in DELETED]
    assert [r["number_of_records"] for r in results] == [600] * (len(won) // 600) + [len(won) % 600]
    ids = [row["Id"] for r in results for row in csv.DictReader(open(r["file"], newline=""))]  # noqa: SIM115
    assert ids == [opportunity(i)["Id"] for i in won]


# --- the protocol in detail -------------------------------------------------------------------


def test_job_lifecycle_locators_and_headers(sim, sf):
    body = {"operation": "query", "query": "SELECT Id FROM Opportunity WHERE CloseDate = 2026-12-01"}
    created = api(sim, sf, "POST", "jobs/query", json=body)
    assert created.status_code == 200
    job = created.json()
    assert len(job["id"]) == 18 and job["id"].startswith("750")
    assert {k: job[k] for k in ("operation", "object", "state", "contentType", "apiVersion")} == {
        "operation": "query",
        "object": "Opportunity",
        "state": "UploadComplete",
        "contentType": "CSV",
        "apiVersion": 62.0,
    }
    assert (job["lineEnding"], job["columnDelimiter"], job["concurrencyMode"]) == ("LF", "COMMA", "Parallel")

    early = api(sim, sf, "GET", f"jobs/query/{job['id']}/results")
    assert early.status_code == 412 and early.json()[0]["errorCode"] == "JOB_NOT_COMPLETE"
    states = [api(sim, sf, "GET", f"jobs/query/{job['id']}").json() for _ in range(3)]
    assert [s["state"] for s in states] == ["InProgress", "JobComplete", "JobComplete"]
    expected = [opportunity(i)["Id"] for i in range(0, N_OPPS, 30) if i not in DELETED]
    assert states[0]["numberRecordsProcessed"] == 0
    assert states[1]["numberRecordsProcessed"] == len(expected)
    assert {"retries", "totalProcessingTime", "jobType"} <= states[1].keys()

    seen, locator, pages = [], None, 0
    while locator != "null":
        params = {"maxRecords": 50} | ({"locator": locator} if locator else {})
        page = api(sim, sf, "GET", f"jobs/query/{job['id']}/results", params=params)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(page.text)))
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(rows)
        assert page.headers["Sforce-Limit-Info"].startswith("api-usage=")
        seen += [r["Id"] for r in rows]
        locator, pages = page.headers["Sforce-Locator"], pages + 1
        if pages == 1:
            again = api(sim, sf, "GET", f"jobs/query/{job['id']}/results", params={"maxRecords": 50})
            assert again.text == page.text  # pages can be read again
            assert locator == "NTA"  # base64 of the offset, like Salesforce's "MTAwMDA"
    assert seen == expected and pages == math.ceil(len(expected) / 50)
    everything = api(sim, sf, "GET", f"jobs/query/{job['id']}/results")  # no maxRecords: all rows
    assert everything.headers["Sforce-Locator"] == "null"
    assert everything.headers["Sforce-NumberOfRecords"] == str(len(expected))

    bad = api(sim, sf, "GET", f"jobs/query/{job['id']}/results", params={"locator": "bogus!"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_LOCATOR"
    bad = api(sim, sf, "GET", f"jobs/query/{job['id']}/results", params={"maxRecords": "0"})
    assert bad.status_code == 400

    listing = api(sim, sf, "GET", "jobs/query").json()
    assert listing["done"] is True and job["id"] in {j["id"] for j in listing["records"]}
    assert api(sim, sf, "DELETE", f"jobs/query/{job['id']}").status_code == 204
    assert api(sim, sf, "GET", f"jobs/query/{job['id']}").status_code == 404
    assert job["id"] not in {j["id"] for j in api(sim, sf, "GET", "jobs/query").json()["records"]}


def test_delimiter_and_line_ending(sim, sf):
    body = {
        "operation": "query",
        "query": "SELECT Id, Name FROM Opportunity WHERE Id = '006SIM000000000004'",
        "columnDelimiter": "PIPE",
        "lineEnding": "CRLF",
    }
    job = api(sim, sf, "POST", "jobs/query", json=body).json()
    assert (job["columnDelimiter"], job["lineEnding"]) == ("PIPE", "CRLF")
    sim.server.bulk_jobs.get(job["id"]).polls_until_complete = 1
    assert api(sim, sf, "GET", f"jobs/query/{job['id']}").json()["state"] == "JobComplete"
    text = api(sim, sf, "GET", f"jobs/query/{job['id']}/results").text
    assert text == 'Id|Name\r\n006SIM000000000004|"Deal, ""quoted"" 4"\r\n'


def test_snapshot_is_taken_when_the_job_completes(sim, sf):
    soql = "SELECT Id FROM Opportunity WHERE CloseDate = 2027-06-01"
    job = api(sim, sf, "POST", "jobs/query", json={"operation": "query", "query": soql}).json()
    api(sim, sf, "GET", f"jobs/query/{job['id']}")  # InProgress
    first = opportunity(900_000) | {"CloseDate": date(2027, 6, 1)}
    sim.store.upsert("Opportunity", [first])  # written before completion: in the snapshot
    api(sim, sf, "GET", f"jobs/query/{job['id']}")  # JobComplete
    sim.store.upsert("Opportunity", [opportunity(900_001) | {"CloseDate": date(2027, 6, 1)}])  # too late
    text = api(sim, sf, "GET", f"jobs/query/{job['id']}/results").text
    assert text == f"Id\n{first['Id']}\n"
    scenarios.purge(sim.store, "Opportunity", [first["Id"], opportunity(900_001)["Id"]])


def test_polls_until_complete_is_configurable(sim, sf):
    sim.server.set_faults(Faults(bulk_polls_until_complete=4))
    job = api(
        sim, sf, "POST", "jobs/query", json={"operation": "query", "query": "SELECT Id FROM Opportunity"}
    )
    states = [api(sim, sf, "GET", f"jobs/query/{job.json()['id']}").json()["state"] for _ in range(5)]
    assert states == ["InProgress", "InProgress", "InProgress", "JobComplete", "JobComplete"]


def test_abort_and_delete(sim, sf):
    client = sf.bulk2.Opportunity._client
    job = client.create_job("query", "SELECT Id FROM Opportunity")
    refused = api(sim, sf, "DELETE", f"jobs/query/{job['id']}")
    assert refused.status_code == 400
    assert (
        refused.json()[0]["message"]
        == "Error encountered when deleting the job because the job is not terminated"
    )
    assert client.abort_job(job["id"], True)["state"] == "Aborted"
    assert client.get_job(job["id"], True)["state"] == "Aborted"
    with pytest.raises(SalesforceOperationError, match="Job failure"):
        client.wait_for_job(job["id"], True, 0)
    with pytest.raises(SalesforceGeneralError) as info:
        client.get_query_results(job["id"])
    assert info.value.status == 412
    with pytest.raises(SalesforceMalformedRequest):
        client.abort_job(job["id"], True)  # already terminal
    # Salesforce answers 204 No Content, so simple-salesforce's delete_job (which parses a JSON
    # body) raises although the job is gone: an extractor must not call it as is.
    with pytest.raises(ValueError):
        client.delete_job(job["id"], True)
    assert api(sim, sf, "GET", f"jobs/query/{job['id']}").status_code == 404
    other = client.create_job("query", "SELECT Id FROM Opportunity")
    client.abort_job(other["id"], True)
    deleted = api(sim, sf, "DELETE", f"jobs/query/{other['id']}")
    assert deleted.status_code == 204 and deleted.content == b"" and "Content-Length" not in deleted.headers


@pytest.mark.parametrize(
    ("soql", "fragment"),
    [
        ("SELECT Id FROM Opportunity WHERE", "unexpected token: <EOF>"),
        ("SELECT Id, Bogus__c FROM Opportunity", "No such column 'Bogus__c' on entity 'Opportunity'"),
        ("SELECT Id FROM Lead", "sObject type 'Lead' is not supported"),
        ("SELECT COUNT() FROM Opportunity", "not supported by Bulk API 2.0"),
    ],
)
def test_malformed_query_is_refused_at_creation(sim, sf, soql, fragment):
    before = len(sim.server.bulk_jobs.all())
    with pytest.raises(SalesforceMalformedRequest) as info:
        list(sf.bulk2.Opportunity.query(soql, wait=0))
    [error] = info.value.content
    assert error["errorCode"] == "API_ERROR" and fragment in error["message"]
    assert len(sim.server.bulk_jobs.all()) == before  # no job was created


def test_bad_job_requests(sim, sf):
    for body, status in [
        ({"operation": "insert", "query": "SELECT Id FROM Opportunity"}, 400),
        ({"operation": "query"}, 400),
        ({"operation": "query", "query": "SELECT Id FROM Opportunity", "columnDelimiter": "X"}, 400),
    ]:
        assert api(sim, sf, "POST", "jobs/query", json=body).status_code == status
    response = api(sim, sf, "POST", "jobs/query", data="{not json")
    assert response.status_code == 400 and response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert api(sim, sf, "GET", "jobs/query/750AAAAAAAAAAAAAAA").status_code == 404


# --- faults and bulk --------------------------------------------------------------------------


def test_5xx_and_reset_while_paging_then_retry_the_locator(sim, sf):
    client = sf.bulk2.Opportunity._client
    job = client.create_job("query", SOQL)
    client.wait_for_job(job["id"], True, 0)
    sim.server.set_faults(Faults(errors_5xx_after=1, errors_5xx_count=1, reset_after=3, reset_count=1))
    first = client.get_query_results(job["id"], "", 2000)  # call 1
    with pytest.raises(SalesforceGeneralError) as info:
        client.get_query_results(job["id"], first["locator"], 2000)  # call 2: 503
    assert info.value.status == 503
    second = client.get_query_results(job["id"], first["locator"], 2000)  # call 3: the retry works
    with pytest.raises(requests.ConnectionError):
        client.get_query_results(job["id"], second["locator"], 2000)  # call 4: reset
    third = client.get_query_results(job["id"], second["locator"], 2000)
    assert third["locator"] == ""
    rows = parse([first["records"], second["records"], third["records"]])
    assert len(rows) == len({r["Id"] for r in rows}) == N_OPPS - len(DELETED)


def test_jobs_survive_a_session_expiry(sim, sf):
    client = sf.bulk2.Opportunity._client
    job = client.create_job("query", "SELECT Id FROM Opportunity LIMIT 10")
    sim.server.set_faults(Faults(expire_session_after=0))
    with pytest.raises(SalesforceExpiredSession):
        client.get_job(job["id"], True)
    fresh = connect(sim.url, asdict(sim.creds), verify=sim.ca).bulk2.Opportunity._client
    fresh.wait_for_job(job["id"], True, 0)
    assert fresh.get_query_results(job["id"])["number_of_records"] == 10


def test_bulk_calls_are_counted_and_rate_limited(sim, sf):
    sim.server.set_faults(Faults(rate_limit_after=1, rate_limit_calls=1))
    client = sf.bulk2.Opportunity._client
    job = client.create_job("query", "SELECT Id FROM Opportunity LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as info:
        client.get_job(job["id"], True)
    assert info.value.status == 403 and info.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    client.wait_for_job(job["id"], True, 0)


def test_failed_jobs(sim, sf):
    sim.server.set_faults(Faults(bulk_job_failure="InternalServerError: retry the job"))
    with pytest.raises(SalesforceOperationError, match="InternalServerError: retry the job"):
        list(sf.bulk2.Opportunity.query("SELECT Id FROM Opportunity", wait=0))

    # a field removed between creation and completion fails the job, as a real org would
    sim.server.set_faults(Faults())
    client = sf.bulk2.Opportunity._client
    job = client.create_job("query", "SELECT Id, Probability FROM Opportunity")
    sim.server.set_faults(Faults(describe_drift={"Opportunity": {"remove": ["Probability"]}}))
    with pytest.raises(SalesforceOperationError, match="No such column 'Probability'"):
        client.wait_for_job(job["id"], True, 0)
    assert client.get_job(job["id"], True)["state"] == "Failed"


def test_describe_drift_applies_to_bulk(sim, sf):
    drift = {"Opportunity": {"add": [{"name": "Region__c", "type": "string"}], "retype": {"IsWon": "string"}}}
    sim.server.set_faults(Faults(describe_drift=drift))
    soql = "SELECT Id, Region__c, IsWon FROM Opportunity WHERE Id = '006SIM000000000004'"
    assert parse(sf.bulk2.Opportunity.query(soql, wait=0)) == [
        {"Id": "006SIM000000000004", "Region__c": "Region__c-0004", "IsWon": "true"}
    ]


def test_finished_jobs_are_evicted_past_the_caps(sim, sf, monkeypatch):
    jobs = sim.server.bulk_jobs
    monkeypatch.setattr(jobs, "max_jobs", len(jobs.all()) + 2)
    client = sf.bulk2.Opportunity._client
    ids = []
    for _ in range(4):
        job = client.create_job("query", "SELECT Id FROM Opportunity LIMIT 3")
        client.wait_for_job(job["id"], True, 0)
        ids.append(job["id"])
    kept = {j.id for j in jobs.all()}
    assert ids[-1] in kept and ids[-2] in kept and len(jobs.all()) <= jobs.max_jobs
    monkeypatch.setattr(jobs, "max_result_bytes", 0)
    job = client.create_job("query", "SELECT Id FROM Opportunity LIMIT 3")
    client.wait_for_job(job["id"], True, 0)
    assert [j.id for j in jobs.all()] == [job["id"]]  # only the job just finished survives
