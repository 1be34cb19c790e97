"""Great Expectations Data Docs: a page per validation, the index, alerts' links, ``tally docs``."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tally import catalog
from tally.alerts.model import failure_alert, gate_alert
from tally.core.errors import DataProblem
from tally.lake import Lake, PartitionWriter, arrow_schema
from tally.quality import docs, parquet
from tally.quality.result import GateResult

OPP = catalog.SALESFORCE["Opportunity"]
TS = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(tmp_path / "data_docs"))
    monkeypatch.delenv("TALLY_DATA_DOCS", raising=False)
    monkeypatch.delenv("TALLY_DATA_DOCS_KEEP", raising=False)
    return tmp_path / "data_docs"


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    rows = [{"Id": f"006{i:015d}", "Name": f"Deal {i}", "AccountId": None, "OwnerId": "005000000000000AAA",
             "StageName": "Nurture" if i == 3 else "Prospecting", "Amount": Decimal("1.5"),
             "Probability": 10.0, "CloseDate": None, "IsClosed": False, "IsWon": False, "IsDeleted": False,
             "CreatedDate": TS, "SystemModstamp": TS} for i in range(20)]
    schema = arrow_schema(OPP)
    for ds in ("2024-01-02", "2024-01-03"):
        files = PartitionWriter(lake, OPP.lake_path, ds).write(schema, [pa.RecordBatch.from_pylist(rows, schema=schema)])
        lake.write_manifest(OPP.lake_path, ds, {"files": files, "row_count": 20})
    return lake


def validate(lake: Lake, ds: str = "2024-01-02", source_count: int = 20) -> GateResult:
    return parquet.validate_parquet("raw.salesforce.Opportunity", lake, OPP.lake_path, ds,
                                 {"source_count": source_count})


def test_each_validation_gets_a_gx_page_listed_in_the_index(site, lake):
    result = validate(lake)
    assert not result.success
    assert result.data_docs.startswith("validations/raw/salesforce/Opportunity/2024-01-02/")
    page = (site / result.data_docs).read_text()
    assert "raw.salesforce.Opportunity" in page and "Nurture" in page  # GX's page, with the offending value
    assert "compiled by Great Expectations" in page and (site / "static" / "images" / "favicon.ico").exists()
    assert (site / "expectations/raw/salesforce/Opportunity.html").exists()  # the suite's own page
    second = validate(lake, "2024-01-03")
    index = (site / "index.html").read_text()
    assert result.data_docs in index and second.data_docs in index
    entries = docs.latest(site)
    assert [e["filepath"] for e in entries] == [second.data_docs, result.data_docs]  # newest first
    assert entries[0]["run_name"] == "2024-01-03" and entries[0]["validation_success"] is False


def test_old_pages_are_pruned_and_the_index_stays_bounded(site, lake, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DOCS_KEEP", "2")
    pages = [validate(lake).data_docs for _ in range(3)]
    assert not (site / pages[0]).exists() and all((site / p).exists() for p in pages[1:])
    assert [e["filepath"] for e in docs.latest(site)] == pages[:0:-1]


def test_a_batch_of_validations_updates_the_index_once_with_every_page(site, lake, monkeypatch):
    renders = []
    real = docs.render_index
    monkeypatch.setattr(docs, "render_index", lambda catalog: renders.append(1) or real(catalog))
    first = validate(lake)
    with docs.batch_publish():
        batched = [validate(lake, ds) for ds in ("2024-01-02", "2024-01-03", "2024-01-02")]
        assert not (site / batched[0].data_docs).exists()  # written with the index, at the end
    assert len(renders) == 2  # one for the lone validation, one for the batch
    entries = docs.latest(site)
    assert [e["filepath"] for e in entries] == [*(r.data_docs for r in reversed(batched)), first.data_docs]
    assert all((site / e["filepath"]).exists() for e in entries)
    index = (site / "index.html").read_text()
    assert all(r.data_docs in index for r in batched)
    with pytest.raises(RuntimeError), docs.batch_publish():  # a gate that crashes half-way keeps its pages
        late = validate(lake, "2024-01-03")
        raise RuntimeError("boom")
    assert docs.latest(site)[0]["filepath"] == late.data_docs and (site / late.data_docs).exists()


def test_validations_in_forked_workers_come_back_in_order_with_their_pages(site, lake):
    from tally.quality.parallel import WorkerFailed, fork_each

    def validate_in_worker(args: tuple[str, int]) -> tuple[int, GateResult]:
        ds, source_count = args
        return os.getpid(), validate(lake, ds, source_count)

    work = [("2024-01-02", 20), ("2024-01-03", 21), ("2024-01-02", 19)]
    with docs.batch_publish():
        done = fork_each(validate_in_worker, work, workers=2)
        assert docs.pending_count() == 3  # the workers' pages wait for the parent's index update
    pids, results = zip(*done, strict=True)
    assert os.getpid() not in pids and len(set(pids)) == 3
    # same verdicts as in-process: the fixture has one bad StageName; wrong counts fail the count check
    assert [r.failed for r in results] == [1, 2, 2]
    assert [(r.failures[0]["observed"], r.failures[0]["expected"]) for r in results[1:]] == [(20, 21), (20, 19)]
    entries = docs.latest(site)
    assert {e["filepath"] for e in entries} == {r.data_docs for r in results}
    assert all((site / r.data_docs).exists() for r in results)
    assert (site / "expectations/raw/salesforce/Opportunity.html").exists()  # the suite page, rebuilt here

    def broken(ds: str) -> None:
        raise ValueError(f"no partition {ds}")

    with pytest.raises(WorkerFailed, match="ValueError: no partition 1999-01-01"):
        fork_each(broken, ["1999-01-01"], workers=2)


def test_parallel_gates_never_lose_each_others_entries(site, lake):
    pids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:  # a gate task
            code = 0
            try:
                for _ in range(3):
                    validate(lake)
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    entries = docs.latest(site)
    assert len(entries) == 9 and all((site / e["filepath"]).exists() for e in entries)
    assert len({e["filepath"] for e in entries}) == 9


def test_docs_can_be_switched_off_and_never_break_a_gate(site, lake, monkeypatch, tmp_path):
    monkeypatch.setenv("TALLY_DATA_DOCS", "off")
    result = validate(lake)
    assert result.data_docs == "" and not site.exists() and result.evaluated == 7
    monkeypatch.setenv("TALLY_DATA_DOCS", "on")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("TALLY_DATA_DOCS_DIR", str(blocker / "data_docs"))
    result = validate(lake)  # the site cannot be written: the gate's verdict still stands
    assert result.data_docs == "" and not result.success and result.failed == 1


def test_the_alert_links_the_failed_validations_page(site, lake):
    result = validate(lake, source_count=21)
    exc = DataProblem(result.summary(), [result])
    alert = failure_alert("tally_daily", "2024-01-02", "land.gate_raw", exc,
                          data_docs_url=(site / "index.html").as_uri())
    link = alert.links["data_docs"]
    assert link == (site / result.data_docs).as_uri()
    assert Path(link.removeprefix("file://")).exists()
    assert f"Data Docs: {link}" in alert.text()
    # a hosted site (directory URL) gets the same page; a template stays the operator's
    hosted = gate_alert("tally_daily", "2024-01-02", [result.to_dict()], data_docs_url="https://dq.example/docs/")
    assert hosted.links["data_docs"] == f"https://dq.example/docs/{result.data_docs}"
    templated = gate_alert("tally_daily", "2024-01-02", [result], data_docs_url="https://dq.example/{suite}")
    assert templated.links["data_docs"] == "https://dq.example/raw.salesforce.Opportunity"


def test_tally_docs_prints_and_builds_the_site(site, lake, monkeypatch):
    from tally.cli import app

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("BROWSER", raising=False)
    runner = CliRunner()
    first = runner.invoke(app, ["docs"])  # headless: prints, does not try a browser
    assert first.exit_code == 0, first.output
    assert (site / "index.html").as_uri() in first.output.splitlines()  # the URL on a line of its own
    assert "No browser here" in first.output
    assert "raw.salesforce.Opportunity" in (site / "index.html").read_text()  # suites listed before any gate
    failed = validate(lake, source_count=21)
    validate(lake, "2024-01-03")  # a newer, also failing validation of the other ds
    out = runner.invoke(app, ["docs", "--failed", "--no-open"])
    assert out.exit_code == 0 and "FAILED" in out.output
    newest = docs.latest(site, failed_only=True)[0]["filepath"]
    assert out.output.strip().splitlines()[-1] == (site / newest).as_uri()
    by_suite = runner.invoke(app, ["docs", "--suite", "raw.salesforce.Opportunity", "--no-open"])
    assert by_suite.output.strip().splitlines()[-1] == (site / newest).as_uri()
    assert json.loads((site / "index.json").read_text())["validations"][-1]["filepath"] == failed.data_docs


def test_the_site_lives_under_tally_home_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("TALLY_DATA_DOCS_DIR", raising=False)
    monkeypatch.setenv("TALLY_HOME", str(tmp_path / "home"))
    assert docs.docs_dir() == (tmp_path / "home" / "data_docs").resolve()
    from tally.alerts.config import default_data_docs_url

    assert default_data_docs_url() == docs.index_path().as_uri()  # what alerts link by default
