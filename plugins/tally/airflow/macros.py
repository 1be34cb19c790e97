"""Template macros of the daily DAG's Spark tasks, rendered when a task runs (never at parse time):
values that depend on the worker (its environment, its checkout, the ``spark_default`` master).
Cheap to import: each macro imports what it needs when it is called.
"""

from __future__ import annotations

import os

# Settings the driver JVM takes only at launch (tally.spark_session.launch_conf's keys), so they go
# on spark-submit's command line; their values for the spark_default connection's master come from
# tally.spark_session.launch_conf when the task runs (a local master's driver runs every task: more
# memory, another collector).
SPARK_LAUNCH_KEYS = ("spark.driver.memory", "spark.driver.extraJavaOptions")


def reporting_currency() -> str:
    """The currency money is converted to: ``$TALLY_REPORTING_CURRENCY``, default USD."""
    return os.environ.get("TALLY_REPORTING_CURRENCY") or "USD"


def spark_launch(key: str, master: str) -> str:
    """One launch setting (a ``SPARK_LAUNCH_KEYS`` key) for ``master``."""
    from tally.spark_session import launch_conf

    return launch_conf(master)[key]


def spark_application(job: str) -> str:
    """``spark_jobs/<job>.py`` where the worker has it (``$TALLY_SPARK_JOBS_DIR``, or the checkout
    of an editable install)."""
    from tally.spark_submit import job_path

    return str(job_path(job))


def spark_py_files() -> str:
    """The zip of the jobs' library (curated_lib and the Tally modules they import), built once per
    content in ``$TALLY_HOME``."""
    from tally.spark_submit import py_files

    return py_files()


MACROS = {"reporting_currency": reporting_currency, "spark_launch": spark_launch,
          "spark_application": spark_application, "spark_py_files": spark_py_files}
