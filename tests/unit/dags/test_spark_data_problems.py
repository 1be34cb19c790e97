"""A Spark job's data problem (exit 2) fails its task at once with the job's message; any other
spark-submit failure stays retryable (tally.airflow.spark)."""

from __future__ import annotations

import pytest
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tally.airflow.spark import TallySparkSubmitOperator, data_problem

JOB_ERROR = ("opportunity_enrichment: error: raw.erp.sales_orders ds=2026-12-06: part-8df90dd9-00000.parquet "
             "holds 595 rows, the commit record says 600 (the files changed after the commit: re-run the step "
             "that wrote this partition)")


def provider_error(code: int, tail: str) -> AirflowException:
    """What the provider's hook raises (``SparkSubmitHook.submit``), with the output's tail."""
    return AirflowException(f"Cannot execute: spark-submit --master local[2] job.py --ds 2026-12-06. "
                            f"Error code is: {code}.\nLast spark-submit output:\n{tail}")


@pytest.fixture
def operator(monkeypatch):
    def run(code: int, tail: str):
        monkeypatch.setattr(SparkSubmitOperator, "execute",
                            lambda self, context: (_ for _ in ()).throw(provider_error(code, tail)))
        return TallySparkSubmitOperator(task_id="spark_x", application="job.py", retries=1).execute({})
    return run


def test_exit_2_fails_without_retry_naming_the_partition(operator):
    with pytest.raises(AirflowFailException) as caught:
        operator(2, f"26/12/07 INFO SparkContext: stopped\n{JOB_ERROR}")
    assert str(caught.value) == JOB_ERROR


@pytest.mark.parametrize("code,tail", [(1, "java.lang.OutOfMemoryError: Java heap space"),
                                        (137, "Killed"), (20, "ExecutorLostFailure")])
def test_other_failures_stay_retryable(operator, code, tail):
    with pytest.raises(AirflowException) as caught:
        operator(code, tail)
    assert not isinstance(caught.value, AirflowFailException) and f"Error code is: {code}." in str(caught.value)


def test_exit_2_without_the_jobs_line_still_fails_and_says_where_to_look():
    assert "see the task log" in data_problem("Cannot execute: spark-submit x. Error code is: 2.")
    assert data_problem("Cannot execute: spark-submit x. Error code is: 21.") is None
