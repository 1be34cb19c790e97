"""The DAG file wires every contract dataset and carries what operators need."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tally import catalog, contract

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "tally_daily.py"


def _load():
    spec = importlib.util.spec_from_file_location("tally_daily_under_test", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contract_and_catalog_name_the_same_datasets():
    assert [d.dataset_id for d in catalog.all_raw()] == list(contract.RAW_DATASETS)
    assert [d.dataset_id for d in catalog.ERP.values()] == list(contract.ERP_DATASETS)
    assert list(catalog.CURATED_KEYS) == list(contract.CURATED)


def test_dag_lands_every_catalog_dataset_and_gates_it():
    module = _load()
    dag = module.tally_daily()
    ids = set(dag.task_ids)
    extracts = {f"land.extract_{d.dataset_id.replace('.', '_')}" for d in catalog.all_raw()}
    assert extracts <= ids
    assert not [t for t in ids if t.startswith("land.gate_raw_")]  # one raw gate, not one per dataset
    gate = dag.get_task("land.gate_raw")
    # the gate runs once every extract is done, failed ones included, and is handed each one's result
    assert gate.upstream_task_ids == extracts and gate.trigger_rule == "all_done"
    (landed,) = gate.op_args
    assert sorted(landed) == sorted(contract.RAW_DATASETS)
    assert {landed[d].operator.task_id for d in contract.RAW_DATASETS} == extracts
    # Spark needs the gate *and* every extract to have succeeded: a failed extract stops it too
    spark = dag.get_task("spark_curated")
    assert spark.upstream_task_ids == extracts | {"land.gate_raw", "land_events"} and spark.trigger_rule == "all_success"
    order = ["spark_curated", "gate_curated", "load_warehouse", "gate_warehouse", "publish_warehouse", "dbt_build",
             "gate_mart"]
    for a, b in zip(order, order[1:], strict=False):
        assert b in dag.get_task(a).downstream_task_ids
    assert dag.tags and dag.doc_md and dag.owner == "data-platform"
    assert not dag.catchup and dag.max_active_runs == 1
    assert dag.get_task("land.extract_salesforce_Opportunity").retries >= 1


def test_data_problems_fail_the_task_without_retry_and_other_errors_propagate():
    import pytest
    from airflow.sdk.exceptions import AirflowFailException

    from tally.airflow.tasks import run
    from tally.core.errors import DataProblem

    def bad_data():
        raise DataProblem("raw.salesforce.Opportunity: 5/6 passed")

    def flaky():
        raise ConnectionError("reset by peer")

    with pytest.raises(AirflowFailException, match="5/6 passed"):
        run(bad_data)
    with pytest.raises(ConnectionError):  # transient: left to Airflow's retries
        run(flaky)
    assert run(lambda x: x + 1, 1) == 2
