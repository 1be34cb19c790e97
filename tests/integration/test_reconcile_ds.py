"""`tally reconcile --ds` on a real ledger (the stack's Postgres) with a fake Airflow REST API (a
tiny local HTTP server speaking the few /api/v2 calls it makes: the real api-server takes long to
start). The verdict follows what ran: a skipped load is "not loaded", never "lost"."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from typer.testing import CliRunner

from tally import contract, ledger
from tally.core import profile as profile_mod
from tally.ledger import Entry

pytestmark = pytest.mark.integration

DS = "2026-04-30"
OPP = "salesforce.Opportunity"


class FakeAirflow:
    """Runs of tally_daily by logical date: ``runs[iso] = (run_id, state, {task_id: state})``."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[str, str, dict[str, str | None]]] = {}
        self.seen: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/auth/token":
                    return self._send(201, {"access_token": "t0k"})
                return self._send(404, {"detail": "not found"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.seen.append(url.path)
                if self.headers.get("Authorization") != "Bearer t0k":
                    return self._send(401, {"detail": "not authenticated"})
                parts = url.path.strip("/").split("/")  # api v2 dags tally_daily dagRuns [id taskInstances]
                if parts[:5] != ["api", "v2", "dags", "tally_daily", "dagRuns"]:
                    return self._send(404, {"detail": "not found"})
                if len(parts) == 5:
                    at = parse_qs(url.query)["logical_date_gte"][0]
                    runs = [{"dag_run_id": r[0], "state": r[1], "logical_date": at, "start_date": at}
                            for iso, r in fake.runs.items() if iso == at]
                    return self._send(200, {"dag_runs": runs, "total_entries": len(runs)})
                run = next((r for r in fake.runs.values() if r[0] == parts[5]), None)
                if run is None or parts[6:] != ["taskInstances"]:
                    return self._send(404, {"detail": "not found"})
                tis = [{"task_id": t, "state": s, "try_number": 1, "duration": 1.0} for t, s in run[2].items()]
                return self._send(200, {"task_instances": tis, "total_entries": len(tis)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def fake_airflow() -> Iterator[FakeAirflow]:
    fake = FakeAirflow()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _tasks(state: str = "success") -> dict[str, str | None]:
    tasks: dict[str, str | None] = {f"land.extract_{d.replace('.', '_')}": state for d in contract.RAW_DATASETS}
    tasks |= {f"spark_{j}": state for j in contract.SPARK_JOBS}
    tasks |= {t: state for t in ("land.gate_raw", "land_events", "gate_curated", "load_warehouse",
                                 "gate_warehouse", "publish_warehouse", "dbt_build", "gate_mart")}
    return tasks


@pytest.fixture
def ledger_db(warehouse_conn):
    """A warehouse whose ledger says: Opportunity's extract re-landed 7 rows (checksum 7777…), the
    warehouse still holds an earlier run's 10 (checksum aaaa…); User agrees everywhere."""
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        for e in (Entry(DS, OPP, "source", 7, None, {}), Entry(DS, OPP, "raw", 7, "7777777777777777", {}),
                  Entry(DS, OPP, "warehouse", 10, "aaaaaaaaaaaaaaaa", {}),
                  Entry(DS, "salesforce.User", "source", 3, None, {}),
                  Entry(DS, "salesforce.User", "raw", 3, "3333333333333333", {}),
                  Entry(DS, "salesforce.User", "warehouse", 3, "3333333333333333", {})):
            ledger.record(conn, e)
    return warehouse_conn


def _invoke(tmp_path, warehouse, airflow_url: str | None, *args: str):
    from tally.cli import app

    prof = profile_mod.Profile(
        warehouse=warehouse, lake=str(tmp_path / "lake"),
        airflow=profile_mod.AirflowApi(airflow_url, "admin", "secret-pw") if airflow_url else None)
    path = tmp_path / "profile.json"
    profile_mod.write(prof, path)
    result = CliRunner().invoke(app, ["reconcile", "--ds", DS, *args],
                                env={"TALLY_PROFILE": str(path), "COLUMNS": "250"})
    assert "secret-pw" not in result.output
    return result


def _gate_raw_failed() -> dict[str, str | None]:
    tasks = _tasks() | {"land.gate_raw": "failed"}
    tasks |= {t: "upstream_failed" for t in tasks if t.startswith("spark_") or t in (
        "gate_curated", "load_warehouse", "gate_warehouse", "publish_warehouse", "dbt_build", "gate_mart")}
    return tasks


def test_gate_raw_failed_and_load_skipped_says_not_loaded_exit_3(tmp_path, ledger_db, fake_airflow):
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("scheduled__2026-04-30", "failed", _gate_raw_failed())
    result = _invoke(tmp_path, ledger_db, fake_airflow.url)
    assert result.exit_code == 3, result.output
    out = " ".join(result.output.split())
    assert "not loaded: land.gate_raw failed, load_warehouse skipped (upstream_failed)" in out
    assert "lost raw→warehouse" not in out and "lost between" not in out
    assert "7777777777777777" in out and "aaaaaaaaaaaaaaaa" in out  # key checksums per hop
    assert "(earlier run)" in out  # the warehouse's 10 rows are not this run's
    assert "tally_daily run scheduled__2026-04-30: failed; failed: land.gate_raw" in out


def test_loss_at_a_hop_that_ran_exits_1(tmp_path, ledger_db, fake_airflow):
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("manual__1", "failed", _tasks() | {"gate_warehouse": "failed"})
    result = _invoke(tmp_path, ledger_db, fake_airflow.url)
    assert result.exit_code == 1, result.output
    assert "lost raw→warehouse: row count 7 -> 10" in " ".join(result.output.split())


def test_no_run_for_the_ds_exits_4(tmp_path, ledger_db, fake_airflow):
    result = _invoke(tmp_path, ledger_db, fake_airflow.url)
    assert result.exit_code == 4, result.output
    assert f"tally_daily has not run for ds {DS}" in result.output
    assert "/api/v2/dags/tally_daily/dagRuns" in fake_airflow.seen


def test_airflow_unreachable_says_so_in_one_line_and_falls_back_to_the_ledger(tmp_path, ledger_db, fake_airflow):
    url = fake_airflow.url
    fake_airflow.server.shutdown()
    fake_airflow.server.server_close()  # nothing listens there any more
    result = _invoke(tmp_path, ledger_db, url)
    lines = [ln for ln in result.output.splitlines() if "Airflow unreachable" in ln]
    assert len(lines) == 1 and "ledger alone" in lines[0], result.output
    assert result.exit_code == 1  # the ledger alone sees raw 7 vs warehouse 10
    assert "(ledger only)" in result.output


def test_json_carries_the_verdict_counts_and_checksums(tmp_path, ledger_db, fake_airflow):
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("r", "failed", _gate_raw_failed())
    result = _invoke(tmp_path, ledger_db, fake_airflow.url, "--format", "json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["code"] == 3
    opp = next(d for d in doc["datasets"] if d["dataset"] == OPP)
    assert opp["raw_rows"] == 7 and opp["raw_key_checksum"] == "7777777777777777"
    assert opp["warehouse_rows"] == 10 and opp["warehouse_this_run"] is False
    assert opp["verdict"].startswith("not loaded: land.gate_raw failed")


@pytest.fixture
def staged_db(warehouse_conn):
    """A ds loaded into staging whose warehouse gate failed (another table's domain, say): every
    hop of User agrees; ``ops.staged`` holds the ds with the gate's verdict."""
    from tally.load import wap

    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        for hop, checksum in (("source", None), ("raw", "3333333333333333"), ("warehouse", "3333333333333333")):
            ledger.record(conn, Entry(DS, "salesforce.User", hop, 3, checksum, {}))
        wap.mark_staged(conn, DS, "manual__1", {"raw.sf_user": 3})
        wap.mark_gated(conn, DS, False, {"raw.sf_user": 3})
    return warehouse_conn


def test_a_failed_warehouse_gate_says_staged_not_published_exit_7(tmp_path, staged_db, fake_airflow):
    failed_gate = _tasks() | {"gate_warehouse": "failed"} | {t: "upstream_failed" for t in (
        "publish_warehouse", "dbt_build", "gate_mart")}
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("manual__1", "failed", failed_gate)
    result = _invoke(tmp_path, staged_db, fake_airflow.url)
    assert result.exit_code == 7, result.output
    out = " ".join(result.output.split())
    assert "staged, not published: gate_warehouse failed" in out and "(exit 7)" in out
    assert "lost" not in out

    no_publish = _tasks() | {"publish_warehouse": None}  # the run ended without publishing
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("manual__1", "failed", no_publish)
    result = _invoke(tmp_path, staged_db, fake_airflow.url)
    assert result.exit_code == 7, result.output
    assert "staged, not published: publish has not run" in " ".join(result.output.split())

    # Airflow unknown: the warehouse's own record (ops.staged) says it
    result = _invoke(tmp_path, staged_db, None, "--format", "json")
    assert result.exit_code == 7, result.output
    user = next(d for d in json.loads(result.stdout)["datasets"] if d["dataset"] == "salesforce.User")
    assert user["verdict"] == "staged, not published: gate_warehouse failed (ledger only)" and user["code"] == 7


def test_a_lake_partition_changed_after_its_commit_is_named_as_the_loss(tmp_path, ledger_db, fake_airflow):
    """Sampling lost keys reads the lake through a verifying reader: a raw file rewritten after its
    commit is reported as what it is (the partition, the file, the counts), never a traceback."""
    import pyarrow as pa
    from support.lake_faults import drop_rows

    from tally import catalog
    from tally.lake import Lake, Manifest, PartitionWriter
    from tally.lake.checksum import checksum

    d = catalog.get(OPP)
    lake = Lake(str(tmp_path / "lake"))
    schema = pa.schema([pa.field(d.key, pa.string())])
    keys = [f"006{i:015d}" for i in range(7)]
    writer = PartitionWriter(lake, d.lake_path, DS)
    writer.write(schema, [pa.record_batch([pa.array(keys)], schema=schema)])
    writer.commit(Manifest(dataset=OPP, files=list(writer.files), key=d.key, row_count=7, key_checksum=checksum(keys)))
    drop_rows(lake, d.lake_path, DS, n=2)
    fake_airflow.runs[f"{DS}T00:00:00+00:00"] = ("manual__1", "failed", _tasks() | {"gate_warehouse": "failed"})
    result = _invoke(tmp_path, ledger_db, fake_airflow.url)
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert "raw.salesforce.Opportunity ds=2026-04-30" in out and "holds 5 rows, the commit record says 7" in out
    assert "Traceback" not in result.output
