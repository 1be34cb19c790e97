"""Kafka → lake on S3 (moto) through the stack's tansu broker: reconciliation, lag, ledger."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest

from tally import contract, ledger
from tally.sources.kafka import layout
from tally.sources.kafka.landing import land_events
from tally.sources.kafka.ledger import record_ledger
from tally_local import generator as crm
from tally_local.events_generator import EventScale, generate_events, produce_events

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 1, 10, tzinfo=UTC)
SCALE = EventScale(days=3, events_per_day=700, malformed_rate=0.03)
FAST = {"session_timeout_ms": 2_000, "poll_timeout_ms": 400, "idle_polls": 2}  # tansu joins in ~1 s


def _read_lake(lake, topic):
    landed, reasons = [], Counter()
    for ds in lake.committed(layout.dataset_path(topic)):
        landed += lake.read_table(layout.dataset_path(topic), ds).column("event_id").to_pylist()
    q = layout.dataset_path(topic, layout.QUARANTINE_ZONE)
    for ds in lake.committed(q):
        table = lake.read_table(q, ds)
        if table.num_columns:
            reasons.update(table.column("reason").to_pylist())
    return landed, reasons


def test_land_reconciles_reports_lag_and_records_the_ledger(stack, s3_lake, warehouse_conn):
    bootstrap = f"127.0.0.1:{stack.state['kafka']['port']}"
    topic = f"tally.activity_{uuid.uuid4().hex[:6]}"
    accounts = crm.generate(crm.Scale(accounts=30, opportunities=10, users=3, days=3), seed=2,
                            as_of=AS_OF).salesforce["Account"]
    produced = produce_events(bootstrap, topic, seed=2, scale=SCALE, as_of=AS_OF, accounts=accounts)
    assert produced["sent"] == produced["produced"] and not produced["skipped"]
    again = produce_events(bootstrap, topic, seed=2, scale=SCALE, as_of=AS_OF, accounts=accounts)
    assert again["skipped"] and again["sent"] == 0  # seeding twice does not append twice

    # A bounded run leaves lag; the next run catches up from the committed offsets.
    first = land_events(s3_lake, bootstrap, topic, max_messages=600, batch_size=250, **FAST)
    assert first["messages"] == 600 and first["batches"] == 3
    assert first["lag"] == produced["produced"] - 600
    rest = land_events(s3_lake, bootstrap, topic, batch_size=800, **FAST)
    assert rest["lag"] == 0 and first["messages"] + rest["messages"] == produced["produced"]
    assert all(p["end_offset"] == p["highwater"] for p in rest["partitions"].values())

    truth = generate_events(SCALE, 2, AS_OF, accounts)
    landed, reasons = _read_lake(s3_lake, topic)
    assert sorted(landed) == sorted(m.event_id for m in truth if m.valid)
    assert reasons == Counter(produced["by_reason"])
    assert first["landed"] + rest["landed"] + first["quarantined"] + rest["quarantined"] == produced["produced"]

    nothing = land_events(s3_lake, bootstrap, topic, **FAST)
    assert (nothing["messages"], nothing["lag"], nothing["ds"]) == (0, 0, {})

    with psycopg.connect(warehouse_conn.conninfo(), autocommit=True) as conn:
        entries = record_ledger(conn, s3_lake, rest)
        assert sorted(e.ds for e in entries) == sorted(rest["ds"])
        for ds, expected in produced["per_ds"].items():
            (row,) = [e for e in ledger.entries(conn, ds) if e.dataset == layout.ledger_dataset(topic)] or [None]
            if row is None:  # every ds of the topic was touched by the catch-up run here
                pytest.fail(f"no ledger row for {ds}")
            assert row.hop == "raw"
            assert row.row_count + row.details["quarantined"] == row.details["messages"] == expected
            assert row.details["lag"] == 0 and set(row.details["offsets"]) <= {"0", "1", "2"}


def test_the_dag_tasks_land_and_fail_loudly_on_a_broken_producer(stack, tmp_path, warehouse_conn, monkeypatch):
    """The DAG's task callables against the stack, Connections from AIRFLOW_CONN_* as in Airflow."""
    import importlib.util
    import json
    from pathlib import Path

    from airflow.sdk.exceptions import AirflowFailException

    bootstrap = f"127.0.0.1:{stack.state['kafka']['port']}"
    topic = f"tally.activity_{uuid.uuid4().hex[:6]}"
    produced = produce_events(bootstrap, topic, seed=4, as_of=AS_OF,
                              scale=EventScale(days=2, events_per_day=300, malformed_rate=0.12))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_KAFKA", json.dumps({"conn_type": "generic", "host": "127.0.0.1",
                                                                "port": stack.state["kafka"]["port"]}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_LAKE", json.dumps({"conn_type": "generic", "host": str(tmp_path / "lake")}))
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_WAREHOUSE", json.dumps({
        "conn_type": "postgres", "host": warehouse_conn.host, "port": warehouse_conn.port,
        "login": warehouse_conn.user, "password": warehouse_conn.password, "schema": warehouse_conn.dbname}))
    path = Path(__file__).resolve().parents[2] / "dags" / "tally_events.py"
    spec = importlib.util.spec_from_file_location("tally_events_tasks_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(contract, "EVENTS_TOPIC", topic)  # the DAG reads the contract's names when it runs
    monkeypatch.setattr(contract, "EVENTS_GROUP", f"tally-lake-{uuid.uuid4().hex[:6]}")
    dag = module.tally_events()

    report = dag.get_task("land").python_callable(run_id="test")
    assert report["messages"] == produced["produced"] and report["lag"] == 0
    with pytest.raises(AirflowFailException, match="quarantined"):  # 12 % malformed > 5 %
        dag.get_task("record_ledger").python_callable(report, run_id="test")
    with psycopg.connect(warehouse_conn.conninfo()) as conn:  # the evidence is written before failing
        rows = {ds: [e for e in ledger.entries(conn, ds) if e.dataset == layout.ledger_dataset(topic)]
                for ds in produced["per_ds"]}
    assert all(len(r) == 1 and r[0].details["messages"] == produced["per_ds"][ds] for ds, r in rows.items())
