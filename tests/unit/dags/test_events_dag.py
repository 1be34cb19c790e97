"""The tally_events DAG: wiring, schedule, style; the Kafka connection helper."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "tally_events.py"


def _load():
    spec = importlib.util.spec_from_file_location("tally_events_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dag_lands_then_records_the_ledger_every_15_minutes():
    module = _load()
    dag = module.tally_events()
    assert dag.dag_id == "tally_events"
    assert "record_ledger" in dag.get_task("land").downstream_task_ids
    assert dag.tags and dag.doc_md and dag.owner == "data-platform"
    assert not dag.catchup and dag.max_active_runs == 1
    assert dag.get_task("land").retries >= 1
    assert dag.timetable.expression == "*/15 * * * *"
    assert [o.name for o in dag.get_task("land").outlets] == ["raw.kafka.activity"]


def test_kafka_bootstrap_comes_from_the_tally_kafka_connection(monkeypatch):
    from tally.airflow.connections import kafka_bootstrap

    monkeypatch.setenv("AIRFLOW_CONN_TALLY_KAFKA", json.dumps({"conn_type": "generic", "host": "127.0.0.1",
                                                                "port": 19092}))
    assert kafka_bootstrap() == "127.0.0.1:19092"
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_KAFKA", json.dumps({"conn_type": "generic", "host": "b1:9093,b2",
                                                                "port": 9092}))
    assert kafka_bootstrap() == "b1:9093,b2:9092"
    monkeypatch.setenv("AIRFLOW_CONN_TALLY_KAFKA", json.dumps({
        "conn_type": "generic", "host": "ignored", "extra": {"bootstrap_servers": "k1:9092,k2:9092"}}))
    assert kafka_bootstrap() == "k1:9092,k2:9092"
