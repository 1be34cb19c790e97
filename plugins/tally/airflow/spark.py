"""``SparkSubmitOperator`` that tells a job's data problem from a transient failure.

A Tally Spark job (``spark_jobs/curated_lib.job_main``) exits **2** when its input is not what
its commit record says or a ``JobError`` (a data problem: retrying reads the same files again),
with ``<job>: error: <what>`` on stderr. The provider raises one ``AirflowException`` for every
non-zero exit, so such a job was retried and its alert began with the spark-submit command line.
Here exit 2 becomes ``AirflowFailException`` (no retry) whose message is the job's own error
line; any other failure (a JVM crash, a lost executor, exit 1) is raised as before and retried.
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

DATA_PROBLEM_EXIT = 2  # curated_lib.job_main's exit code for a data problem


def data_problem(message: str) -> str | None:
    """The job's ``<job>: error: …`` line when ``message`` (the provider's exception) reports
    spark-submit's exit 2; ``None`` for any other failure."""
    if f"Error code is: {DATA_PROBLEM_EXIT}." not in message:
        return None
    lines = [line.strip() for line in message.splitlines() if ": error: " in line]
    return lines[-1] if lines else "the Spark job reported a data problem (exit 2); see the task log"


class TallySparkSubmitOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` whose job's data problems fail at once with the job's message
    (see the module doc); every parameter is ``SparkSubmitOperator``'s."""

    def execute(self, context):  # type: ignore[override]
        try:
            return super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            problem = data_problem(str(exc))
            if problem is None:
                raise
            raise AirflowFailException(problem) from exc
