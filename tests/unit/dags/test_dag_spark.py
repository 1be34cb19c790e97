"""tally_daily submits the curated jobs as one Spark application (``spark_jobs/all_curated.py``, the jobs
in dependency order inside it) on spark_default: one JVM per ds instead of four (bench/warm_spark.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
JOBS = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")


@pytest.fixture(scope="module")
def dag():
    spec = importlib.util.spec_from_file_location("tally_daily_spark_under_test", REPO / "dags" / "tally_daily.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tally_daily()


def test_the_jobs_are_one_spark_submit_on_spark_default(dag, monkeypatch, tmp_path):
    """The application and its --py-files library are rendered when the task runs (parsing stays cheap)."""
    import zipfile

    monkeypatch.setenv("TALLY_HOME", str(tmp_path))
    env = dag.get_template_env()
    assert not [t for t in dag.task_ids if t.startswith("spark_") and t != "spark_curated"]
    task = dag.get_task("spark_curated")
    assert type(task).__name__ == "TallySparkSubmitOperator"
    assert task._conn_id == "spark_default"
    application = env.from_string(task.application).render(**dag.user_defined_macros)
    assert Path(application) == REPO / "spark_jobs" / "all_curated.py" and Path(application).is_file()
    library = Path(env.from_string(task.py_files).render(**dag.user_defined_macros))
    assert library.parent == tmp_path / "spark" and library.suffix == ".zip"
    assert {"curated_lib.py", "all_curated.py", *(f"{job}.py" for job in JOBS), "tally/lake/__init__.py",
            "tally/lake/state.py"} <= set(zipfile.ZipFile(library).namelist())
    args = task.application_args
    assert args[args.index("--reporting-currency") + 1] == "{{ reporting_currency() }}"
    assert args[args.index("--ds") + 1] == "{{ data_interval_start | ds }}"


def test_the_jobs_run_in_dependency_order_after_the_landing(dag):
    import all_curated

    assert [job.JOB for job in all_curated.JOBS] == list(JOBS)
    task = dag.get_task("spark_curated")
    assert task.downstream_task_ids == {"gate_curated"}
    assert task.upstream_task_ids >= {"land.gate_raw", "land_events", "land.extract_erp_customers",
                                      "land.extract_salesforce_Account"}


def test_reporting_currency_renders_from_the_environment(dag, monkeypatch):
    template = dag.get_template_env().from_string("{{ reporting_currency() }}")
    monkeypatch.delenv("TALLY_REPORTING_CURRENCY", raising=False)
    assert template.render(**dag.user_defined_macros) == "USD"
    monkeypatch.setenv("TALLY_REPORTING_CURRENCY", "EUR")
    assert template.render(**dag.user_defined_macros) == "EUR"


def test_driver_launch_settings_follow_the_connection_master(dag, monkeypatch):
    """A local master's driver runs every task: spark-submit gets its memory and collector; a
    cluster master's driver keeps Spark's defaults."""
    from types import SimpleNamespace

    from tally.spark_session import LOCAL_DRIVER_JAVA_OPTIONS, launch_conf, local_driver_memory

    monkeypatch.delenv("TALLY_SPARK_DRIVER_MEMORY", raising=False)
    monkeypatch.delenv("TALLY_SPARK_DRIVER_JAVA_OPTIONS", raising=False)
    conf = dag.get_task("spark_curated").conf
    assert set(launch_conf("local[2]")) <= set(conf)  # every launch setting reaches spark-submit
    env = dag.get_template_env()

    def rendered(master: str) -> dict[str, str]:
        conn = SimpleNamespace(spark_default=SimpleNamespace(host=master))
        return {k: env.from_string(v).render(conn=conn, **dag.user_defined_macros) for k, v in conf.items()}

    local = rendered("local[2]")
    assert local["spark.driver.memory"] == local_driver_memory() and local["spark.driver.memory"].endswith("g")
    assert local["spark.driver.extraJavaOptions"] == LOCAL_DRIVER_JAVA_OPTIONS
    assert local["spark.sql.session.timeZone"] == "UTC"
    cluster = rendered("spark://10.0.0.5:7077")
    assert cluster["spark.driver.memory"] == "1g" and cluster["spark.driver.extraJavaOptions"] == ""
    monkeypatch.setenv("TALLY_SPARK_DRIVER_MEMORY", "3g")
    assert rendered("local[*]")["spark.driver.memory"] == "3g"
