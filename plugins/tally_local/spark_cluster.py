"""A Spark standalone cluster on this machine, for tests and demos (the local rig's, not the product's).

``StandaloneCluster`` starts a Spark standalone master and one worker with ``spark-class`` from
the same Spark installation the product uses (``tally.spark_session.spark_home``); submit jobs to
its ``url`` with ``tally.spark_submit.submit_command``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tally.spark_session import DEFAULT_LOCAL_IP, spark_home
from tally.spark_submit import spark_env
from tally_local.stack.process import PRIVATE_UMASK, free_port, private_log


class StandaloneCluster:
    """A Spark standalone master and one worker on this machine, started with ``spark-class``
    (``org.apache.spark.deploy.master.Master`` / ``...worker.Worker``) from the pyspark install.

    ``start()`` returns the master URL once the worker has registered (polling the master's
    ``/json`` status page); ``stop()`` ends both processes (their own process groups: SIGTERM,
    then SIGKILL) and is safe to call twice. Use it as a context manager so they are always
    stopped. Logs go to ``workdir/{master,worker}.log``. Every port (RPC and web UI, master, worker
    and the executors it launches) is bound to ``host`` (``SPARK_LOCAL_IP``), 127.0.0.1 by default;
    what the processes write is their owner's only (umask 077).
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
        log = open(private_log(self.workdir / f"{name}.log"), "ab")  # noqa: SIM115 - owned by the process
        try:
            proc = subprocess.Popen([os.path.join(spark_home(), "bin", "spark-class"), *args], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.workdir, umask=PRIVATE_UMASK)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def status(self) -> dict:
        """The master's status JSON (``workers``, ``aliveworkers``, ``activeapps``...)."""
        with urllib.request.urlopen(f"http://{self.host}:{self.ui_port}/json/", timeout=5) as reply:  # noqa: S310
            return json.loads(reply.read())

    def start(self) -> str:
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
