"""One SparkSession builder for Tally, tuned for small-to-medium jobs on the machine at hand.

``build_session`` works both in-process (pyspark launches its own JVM) and under
``spark-submit`` (the JVM already exists; settings given with ``--conf`` win over our
defaults). The key checksum's Spark form is ``tally.lake.checksum.checksum_col``. The jobs
import this module (it is shipped to them with ``--py-files``); launching them is
``tally.spark_submit``.

Environment overrides (all optional):

- ``TALLY_SPARK_MASTER``: master when none is given and not under spark-submit (``local[*]``)
- ``TALLY_SPARK_DRIVER_MEMORY`` (local masters: a quarter of the machine's memory, 1–8 GiB;
  otherwise ``1g``), ``TALLY_SPARK_EXECUTOR_MEMORY`` (``1g``)
- ``TALLY_SPARK_SHUFFLE_PARTITIONS`` (2 x cores, at least 2)
- ``TALLY_SPARK_BROADCAST_MB`` (32): tables below this are broadcast in joins
- ``TALLY_SPARK_DRIVER_JAVA_OPTIONS`` (local masters: ``-XX:+UseParallelGC``)
- ``TALLY_SPARK_LOG_LEVEL`` (``WARN``)

``tally.spark_submit.submit_command`` builds the ``spark-submit`` command line for one of
``spark_jobs/`` (a standalone cluster to submit to, for tests and demos, is ``tally_local.spark_cluster``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is heavy to import; keep it off import time
    from pyspark.sql import SparkSession

DEFAULT_LOCAL_IP = "127.0.0.1"


def machine_cores() -> int:
    """CPU cores this process may use (respects affinity / cgroup cpusets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def master_cores(master: str | None) -> int:
    """Cores a master gives the job: ``local[N]``/``local[N,F]`` -> N, otherwise the machine's."""
    m = re.fullmatch(r"local\[(\d+)(?:,\d+)?\]", master or "")
    if m:
        return max(1, int(m.group(1)))
    return machine_cores()


def machine_memory_bytes() -> int:
    """Memory this process may use: the cgroup limit when there is one, else physical memory."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    return total


def local_driver_memory() -> str:
    """Heap for a ``local[*]`` application, whose driver JVM also runs every task: a quarter of
    the machine's memory, between 1 and 8 GiB (sorts and joins of a few million wide rows then
    stay in memory instead of spilling, as they do with 1 GiB)."""
    return f"{min(8, max(1, machine_memory_bytes() // 4 // 2**30))}g"


def shuffle_partitions(master: str | None = None) -> int:
    env = os.environ.get("TALLY_SPARK_SHUFFLE_PARTITIONS")
    if env:
        return max(1, int(env))
    return max(2, 2 * master_cores(master))


def spark_home() -> str:
    """The Spark installation: ``$SPARK_HOME`` if set, else the installed pyspark folder."""
    if os.environ.get("SPARK_HOME"):
        return os.environ["SPARK_HOME"]
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise RuntimeError("pyspark is not installed in this Python environment")
    return str(Path(spec.origin).parent)


def default_conf(master: str | None) -> dict[str, str]:
    """Tally's Spark defaults for a job on ``master`` (None = unknown / cluster default)."""
    broadcast_mb = int(os.environ.get("TALLY_SPARK_BROADCAST_MB", "32"))
    conf = {
        "spark.sql.shuffle.partitions": str(shuffle_partitions(master)),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.adaptive.skewJoin.enabled": "true",
        "spark.sql.autoBroadcastJoinThreshold": f"{broadcast_mb}m",
        "spark.sql.adaptive.autoBroadcastJoinThreshold": f"{broadcast_mb}m",
        "spark.sql.session.timeZone": "UTC",
        # Input cut into several splits per core: with one split per core (Spark's default),
        # file boundaries leave e.g. 3 splits for 2 cores, and the third runs alone.
        "spark.sql.files.minPartitionNum": str(4 * master_cores(master)),
        # The latest version per key is a row_number() = 1 window. Spark's pre-shuffle group
        # limit sorts every raw row first to drop the older versions early; raw history is
        # mostly one version per key, so that sort is pure cost (a third of the window's time).
        "spark.sql.optimizer.windowGroupLimitThreshold": "-1",
        "spark.executor.memory": os.environ.get("TALLY_SPARK_EXECUTOR_MEMORY", "1g"),
        # Parquet that pyarrow, Postgres loaders and the lake schema agree on.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # The lake's commit marker is our manifest, not Hadoop's _SUCCESS.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    conf.update(launch_conf(master or "local[*]"))
    if master is None or master.startswith("local"):
        conf["spark.ui.enabled"] = "false"
        conf["spark.driver.host"] = os.environ.get("SPARK_LOCAL_IP", DEFAULT_LOCAL_IP)
        conf["spark.driver.bindAddress"] = conf["spark.driver.host"]
    return conf


# The driver JVM of a local master runs every task: the throughput collector rather than G1,
# whose concurrent threads compete with the tasks for the few cores (a cold
# opportunity_enrichment at 5M on 2 cores: 42.6-45.5 s, against 46.4-50.7 s with G1).
LOCAL_DRIVER_JAVA_OPTIONS = "-XX:+UseParallelGC"


def launch_conf(master: str | None) -> dict[str, str]:
    """The settings that only take effect when the driver JVM starts: pass
    them to ``spark-submit`` (``--conf``); ``build_session`` sets them itself in-process. For a
    local master: driver memory (``local_driver_memory``) and ``LOCAL_DRIVER_JAVA_OPTIONS``; for
    a cluster master, whose driver only coordinates: ``1g`` and no options."""
    local = (master or "").startswith("local")
    return {
        "spark.driver.memory": os.environ.get("TALLY_SPARK_DRIVER_MEMORY", local_driver_memory() if local else "1g"),
        "spark.driver.extraJavaOptions": os.environ.get("TALLY_SPARK_DRIVER_JAVA_OPTIONS",
                                                        LOCAL_DRIVER_JAVA_OPTIONS if local else ""),
    }


def _under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    app_name: str,
    master: str | None = None,
    extra_conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Create (or reuse) the SparkSession with Tally's defaults.

    In-process, ``master`` defaults to ``$TALLY_SPARK_MASTER`` or ``local[*]``. Under
    spark-submit the submitted master and ``--conf`` values are kept; our defaults only
    fill gaps (``master`` is then ignored unless spark-submit gave none).
    """
    os.environ.setdefault("SPARK_LOCAL_IP", DEFAULT_LOCAL_IP)
    os.environ.setdefault("SPARK_HOME", spark_home())
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark import SparkConf
    from pyspark.core.context import SparkContext
    from pyspark.sql import SparkSession

    submitted: dict[str, str] = {}
    if _under_spark_submit():
        SparkContext._ensure_initialized()  # connects to spark-submit's JVM
        submitted = dict(SparkConf().getAll())  # spark-submit's --master/--conf
        effective_master = submitted.get("spark.master") or master or "local[*]"
    else:
        effective_master = master or os.environ.get("TALLY_SPARK_MASTER") or "local[*]"

    conf = default_conf(effective_master)
    conf.update(extra_conf or {})
    builder = SparkSession.builder.appName(app_name)
    if "spark.master" not in submitted:
        builder = builder.master(effective_master)
    for key, value in conf.items():
        if key not in submitted:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("TALLY_SPARK_LOG_LEVEL", "WARN"))
    return spark


def has_class(spark: SparkSession, class_name: str) -> bool:
    """Whether the driver JVM can load ``class_name`` (e.g. a Hadoop FileSystem)."""
    jvm = spark.sparkContext._jvm
    try:
        loader = jvm.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(class_name, False, loader)
        return True
    except Exception:  # py4j wraps ClassNotFoundException
        return False
