"""One SparkSession builder for Tally, tuned for small-to-medium jobs on the machine at hand.

``build_session`` works both in-process (pyspark launches its own JVM) and under
``spark-submit`` (the JVM already exists; settings given with ``--conf`` win over our
defaults). ``spark_env`` is the environment a ``spark-submit`` subprocess needs when Spark
comes from the pyspark wheel. ``spark_checksum`` is ``tally.checksum.checksum`` in Spark SQL.

Environment overrides (all optional):

- ``TALLY_SPARK_MASTER``: master when none is given and not under spark-submit (``local[*]``)
- ``TALLY_SPARK_DRIVER_MEMORY`` (local masters: a quarter of the machine's memory, 1–8 GiB;
  otherwise ``1g``), ``TALLY_SPARK_EXECUTOR_MEMORY`` (``1g``)
- ``TALLY_SPARK_SHUFFLE_PARTITIONS`` (2 x cores, at least 2)
- ``TALLY_SPARK_BROADCAST_MB`` (32): tables below this are broadcast in joins
- ``TALLY_SPARK_DRIVER_JAVA_OPTIONS`` (local masters: ``-XX:+UseParallelGC``)
- ``TALLY_SPARK_LOG_LEVEL`` (``WARN``)

``StandaloneCluster`` starts a Spark standalone master and worker on this machine with
``spark-class`` from the same installation (a cluster to submit to in tests and demos), and
``submit_command`` builds the ``spark-submit`` command line for one of ``spark_jobs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is heavy to import; keep it off import time
    from pyspark.sql import Column, DataFrame, SparkSession

MOD_SQL = "18446744073709551616"  # 2**64
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


def spark_submit_bin() -> str:
    return os.path.join(spark_home(), "bin", "spark-submit")


def _tally_import_root() -> str:
    """The folder that holds the ``tally`` package (``plugins/``)."""
    return str(Path(__file__).resolve().parent.parent)


def spark_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``spark-submit`` subprocess (a full copy of ``base``/``os.environ``).

    Sets SPARK_HOME (the pyspark folder unless already set), PYSPARK_PYTHON and
    PYSPARK_DRIVER_PYTHON (this interpreter, so the job sees the same packages), SPARK_LOCAL_IP
    (unless set) and puts the folder holding ``tally`` on PYTHONPATH.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("SPARK_HOME", spark_home())
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", env["PYSPARK_PYTHON"])
    env.setdefault("SPARK_LOCAL_IP", DEFAULT_LOCAL_IP)
    root = _tally_import_root()
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env


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


# -- the key checksum ----------------------------------------------------------------------
def _hash_halves(col: Column) -> tuple[Column, Column]:
    """The first 64 bits of md5(key) as two unsigned 32-bit halves, each a bigint.

    Summing bigints is several times faster than summing the 64-bit value as decimal(38,0),
    which Spark does with BigDecimal: the checksum of 5M keys took 6.1 s that way, 2.8 s this
    way. The halves' sums stay exact up to 2**31 rows per aggregate."""
    from pyspark.sql import functions as F

    hexed = F.md5(col.cast("string"))
    return (F.conv(F.substring(hexed, 1, 8), 16, 10).cast("long"),
            F.conv(F.substring(hexed, 9, 8), 16, 10).cast("long"))


def checksum_sql(column_sql: str) -> str:
    """Spark SQL aggregate expression computing the checksum of ``column_sql``.

    ``column_sql`` must already be a safely quoted identifier or expression.
    """
    hexed = f"md5(CAST({column_sql} AS STRING))"
    hi, lo = (f"CAST(conv(substr({hexed}, {at}, 8), 16, 10) AS BIGINT)" for at in (1, 9))
    total = (f"CAST(coalesce(sum({hi}), 0) AS DECIMAL(38,0)) * CAST({2**32} AS DECIMAL(38,0))"
             f" + CAST(coalesce(sum({lo}), 0) AS DECIMAL(38,0))")
    return f"lower(lpad(conv(CAST(pmod({total}, CAST({MOD_SQL} AS DECIMAL(38,0))) AS STRING), 10, 16), 16, '0'))"


def checksum_col(key: Column | str) -> Column:
    """Aggregate column: the key checksum as 16 lowercase hex digits."""
    from pyspark.sql import functions as F

    hi, lo = _hash_halves(F.col(key) if isinstance(key, str) else key)
    dec = "decimal(38,0)"
    total = (F.coalesce(F.sum(hi), F.lit(0)).cast(dec) * F.lit(2**32).cast(dec)
             + F.coalesce(F.sum(lo), F.lit(0)).cast(dec))
    mod = F.pmod(total, F.lit(MOD_SQL).cast(dec))
    return F.lower(F.lpad(F.conv(mod.cast("string"), 10, 16), 16, "0"))


def spark_count_and_checksum(df: DataFrame, key_col: str) -> tuple[int, str]:
    """Row count and key checksum of ``df`` in one pass."""
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"), checksum_col(key_col).alias("c")).first()
    return int(row["n"]), str(row["c"])


def spark_checksum(df: DataFrame, key_col: str) -> str:
    """``tally.checksum.checksum(df[key_col])``, computed by Spark."""
    return spark_count_and_checksum(df, key_col)[1]


# -- spark-submit and a standalone cluster -------------------------------------------------
def jobs_dir() -> Path:
    """``spark_jobs/`` of this checkout."""
    return Path(__file__).resolve().parents[2] / "spark_jobs"


def submit_command(job: str, args: Sequence[str], master: str | None = None,
                   conf: Mapping[str, str] | None = None) -> list[str]:
    """``spark-submit [--master M] [--conf k=v ...] spark_jobs/<job>.py args...``."""
    cmd = [spark_submit_bin()]
    if master:
        cmd += ["--master", master]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, str(jobs_dir() / f"{job}.py"), *args]


def free_port(host: str = DEFAULT_LOCAL_IP) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class StandaloneCluster:
    """A Spark standalone master and one worker on this machine, started with ``spark-class``
    (``org.apache.spark.deploy.master.Master`` / ``...worker.Worker``) from the pyspark install.

    ``start()`` returns the master URL once the worker has registered (polling the master's
    ``/json`` status page); ``stop()`` ends both processes (their own process groups: SIGTERM,
    then SIGKILL) and is safe to call twice. Use it as a context manager so they are always
    stopped. Logs go to ``workdir/{master,worker}.log``.
    """

    def __init__(self, workdir: Path | str, cores: int = 1, memory: str = "1g", host: str = DEFAULT_LOCAL_IP,
                 timeout: float = 120.0) -> None:
        self.workdir = Path(workdir)
        self.cores, self.memory, self.host, self.timeout = cores, memory, host, timeout
        self.procs: list[subprocess.Popen] = []
        self.port = self.ui_port = 0

    @property
    def url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        env = spark_env()
        env["SPARK_LOCAL_IP"] = self.host
        env["SPARK_LOG_DIR"] = str(self.workdir / "logs")
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            proc = subprocess.Popen([os.path.join(spark_home(), "bin", "spark-class"), *args], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.workdir)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def status(self) -> dict:
        """The master's status JSON (``workers``, ``aliveworkers``, ``activeapps``...)."""
        with urllib.request.urlopen(f"http://{self.host}:{self.ui_port}/json/", timeout=5) as reply:  # noqa: S310
            return json.loads(reply.read())

    def start(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.ui_port = free_port(self.host), free_port(self.host)
        try:
            self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", self.host,
                                   "--port", str(self.port), "--webui-port", str(self.ui_port)])
            self._wait(lambda st: True, "the master to answer")
            self._spawn("worker", ["org.apache.spark.deploy.worker.Worker", "--host", self.host,
                                   "--webui-port", str(free_port(self.host)), "--cores", str(self.cores),
                                   "--memory", self.memory, "--work-dir", str(self.workdir / "work"), self.url])
            self._wait(lambda st: int(st.get("aliveworkers", 0)) >= 1, "a worker to register")
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Spark standalone process exited ({proc.returncode}) while waiting for "
                                       f"{what}; see {self.workdir}/*.log:\n{self.log_tail()}")
            try:
                if ready(self.status()):
                    return
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        raise TimeoutError(f"no {what} within {self.timeout:.0f}s; see {self.workdir}/*.log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for name in ("master", "worker"):
            path = self.workdir / f"{name}.log"
            if path.exists():
                out.append(f"--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in reversed(self.procs):  # worker first
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)  # the group spark-class started (the JVM)
                except ProcessLookupError:
                    continue
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> StandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
