"""Which "warm Spark" runs the four curated jobs of one ds fastest: side by side, same lake, same ds.

The daily DAG submits ``conformed_customers``, ``opportunity_enrichment``, ``rep_rankings`` and
``account_engagement`` as four ``spark-submit`` applications, each paying a cold JVM, a new
SparkContext and an unwarmed JIT. At demo scale that start-up is most of the task. Compared here,
each on its own copy of one raw zone (``bench/spark_transform.generate``, not timed):

1. **four_apps**: four ``spark-submit`` one after another, command lines from
   ``tally.spark_submit.submit_command`` with the DAG's ``--conf`` (``launch_conf`` + UTC);
2. **one_app**: one ``spark-submit`` of ``spark_jobs/all_curated.py`` (four jobs, one application);
3. **connect**: a Spark Connect server (the ``spark-connect`` jar of the pyspark wheel, started
   once with ``tally.spark_session.default_conf``; its start is reported apart), then the four jobs
   as four Connect *client* processes (as four Airflow tasks would run them). A second pass over
   the now-warm server shows the steady state of the following days;
4. **CDS** (``--cds``; adds about two minutes): one cold ``spark-submit`` of conformed_customers
   without and with a dynamic class-data-sharing archive (``-XX:SharedArchiveFile`` in
   ``spark.driver.extraJavaOptions``); dumping the archive is one-off.

Under Connect two things in the jobs do not work unmodified, so the client processes run them
with a **bench-only monkeypatch** (``patch_for_connect``; spark_jobs/ is not changed):
``curated_lib.has_class`` (``spark.sparkContext._jvm``: no JVM in a Connect client; only reached
for s3 lakes) and ``account_engagement``'s events ``Observation``, which is nested below the
written frame's own observation: Spark Connect 4.0.1 returns only the outermost observation's
metrics for a write command, so the job fails with ``KeyError: 'events_read'``.

Every option's outputs are checked equal: each curated manifest's row count, key checksum, schema
fingerprint and counts (``extra``), and each job's JSON summary against the manifests. Wall
seconds can be noisy on a shared machine; CPU seconds (the processes' own, plus the Connect
server's JVM) are printed beside them. The last line is
``warm_spark: four_apps_s=… one_app_s=… connect_s=… one_app_speedup=… connect_speedup=…``.

    .venv/bin/python bench/warm_spark.py [--opportunities 1000] [--cds]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
JOBS = ("conformed_customers", "opportunity_enrichment", "rep_rankings", "account_engagement")
OUTPUTS = {"conformed_customers": "conformed_customers", "opportunities": "opportunities",
           "order_links": "order_links", "rep_rankings": "rep_rankings", "account_engagement": "account_engagement"}
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
MASTER = "local[*]"
SERVER_START_TIMEOUT_S = 120.0
# Python modules the Connect client imports, by the pip name that provides them.
CONNECT_MODULES = {"grpcio": "grpc", "grpcio-status": "grpc_status", "googleapis-common-protos": "google.rpc",
                   "pandas": "pandas", "pyarrow": "pyarrow"}


# -- requirements ---------------------------------------------------------------------------------
def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package (google for google.rpc)
        return False


def missing_connect_packages() -> list[str]:
    """pip names of what the Spark Connect client needs and this interpreter lacks. zstandard only
    where this pyspark asks for it (4.1+ compresses results with it; 4.0 does not import it)."""
    wanted = dict(CONNECT_MODULES)
    try:
        from pyspark.sql.connect import utils as connect_utils
    except ImportError:
        connect_utils = None
    if connect_utils is not None and hasattr(connect_utils, "require_minimum_zstandard_version"):
        wanted["zstandard"] = "zstandard"
    return [name for name, module in wanted.items() if not _importable(module)]


def install_command(packages: Sequence[str]) -> str:
    uv = Path(sys.executable).parent / "uv"
    return f"{uv if uv.exists() else 'uv'} pip install --python {sys.executable} {' '.join(packages)}"


def connect_jar() -> Path | None:
    from tally.spark_session import spark_home

    jars = sorted((Path(spark_home()) / "jars").glob("spark-connect_*.jar"))
    return jars[0] if jars else None


# -- running and measuring processes ----------------------------------------------------------------
def children_cpu() -> float:
    """CPU seconds of this process's finished (waited-for) children and theirs: spark-submit's
    launcher JVM, driver JVM and Python driver all count once they end."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux /proc; 0 where unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) / 1024 if m else 0.0


@dataclass
class Step:
    """One process run: what, wall seconds, CPU seconds, and the job's JSON summary."""

    name: str
    wall: float
    cpu: float
    summary: dict = field(default_factory=dict)


def run_process(name: str, cmd: list[str], env: dict[str, str], log: Path) -> Step:
    """Run ``cmd`` to the end, stderr to ``log``; the last stdout line is the job's JSON summary."""
    cpu_before, began = children_cpu(), time.perf_counter()
    with log.open("ab") as err:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=err, check=False)
    wall, cpu = time.perf_counter() - began, children_cpu() - cpu_before
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{name} failed (exit {done.returncode}); stderr tail from {log}:\n{tail}")
    try:
        summary = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{name}: the last stdout line is not the job's JSON summary: {lines[-1][:200]}") from exc
    return Step(name, wall, cpu, summary)


def job_args(lake_uri: str, ds: str, reporting: str) -> list[str]:
    return ["--lake", lake_uri, "--ds", ds, "--reporting-currency", reporting]


def dag_conf(extra_java: str = "") -> dict[str, str]:
    """The ``--conf`` the DAG gives each job on a local ``spark_default`` (dags/tally_daily.py)."""
    from tally.spark_session import launch_conf

    conf = {"spark.sql.session.timeZone": "UTC", **launch_conf(MASTER)}
    if extra_java:
        conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {extra_java}".strip()
    return conf


def submit(job: str, lake_uri: str, ds: str, reporting: str, log: Path, extra_java: str = "") -> Step:
    from tally.spark_submit import spark_env, submit_command

    cmd = submit_command(job, job_args(lake_uri, ds, reporting), master=MASTER, conf=dag_conf(extra_java))
    return run_process(job, cmd, spark_env(), log)


# -- the Connect server and its clients ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ConnectServer:
    """A Spark Connect server on ``local[*]`` with Tally's defaults (``default_conf``: driver
    memory, GC, shuffle partitions, SPARK_LOCAL_IP ...), bound to 127.0.0.1 only."""

    def __init__(self, jar: Path, log: Path) -> None:
        from tally.spark_session import default_conf
        from tally.spark_submit import spark_env, spark_submit_bin

        self.port = free_port()
        conf = {**default_conf(MASTER), "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": str(self.port)}
        self.cmd = [spark_submit_bin(), "--class", CONNECT_CLASS, "--master", MASTER, "--name", "tally-connect"]
        for key, value in conf.items():
            self.cmd += ["--conf", f"{key}={value}"]
        self.cmd.append(str(jar))
        self.env, self.log, self.heap = spark_env(), log, conf["spark.driver.memory"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait until the gRPC port answers; returns the seconds that took. spark-submit
        and spark-class ``exec``, so the process is the server's JVM itself."""
        began = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Connect server exited ({self.proc.returncode}); see {self.log}")
            if time.perf_counter() - began > SERVER_START_TIMEOUT_S:
                raise RuntimeError(f"the Connect server did not open port {self.port}; see {self.log}")
            time.sleep(0.1)
        return time.perf_counter() - began

    def cpu(self) -> float:
        return process_cpu(self.proc.pid) if self.proc else 0.0

    def rss_mb(self) -> float:
        return process_rss_mb(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def connect_client(server: ConnectServer, job: str, lake_uri: str, ds: str, reporting: str, log: Path) -> Step:
    """One job as its own Connect client process (this file with ``--client``); the step's CPU
    is the client's plus what the server's JVM used meanwhile."""
    from tally.spark_submit import spark_env

    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", job, "--remote", server.url,
           *job_args(lake_uri, ds, reporting)]
    server_before = server.cpu()
    step = run_process(job, cmd, spark_env(), log)
    step.cpu += server.cpu() - server_before
    return step


# -- what the jobs need changed under Connect (bench-only monkeypatch) -----------------------------------
def connect_has_class(spark, class_name: str) -> bool:
    """``tally.spark_session.has_class`` without the JVM: the server loads the class in SQL
    (``try_reflect`` returns NULL when ``Class.forName`` throws)."""
    literal = class_name.replace("'", "")
    row = spark.sql(f"SELECT try_reflect('java.lang.Class', 'forName', '{literal}') AS c").first()
    return row is not None and row["c"] is not None


def patch_for_connect() -> list[str]:
    """Make the unmodified jobs run on a Connect session; returns what was patched.

    - ``curated_lib.has_class`` (``spark.sparkContext._jvm``) -> :func:`connect_has_class`.
    - ``account_engagement.build``: its events ``Observation`` sits below the output's own
      ``observe`` in ``stage_curated``; for a write, Connect 4.0.1 returns the outermost
      observation's metrics only. The patched ``build`` fills the events observation with its
      own small aggregate action (the same three sums over the same full join) and builds the
      output without it: same counts, one extra pass over the events.
    """
    import account_engagement
    import curated_lib
    from pyspark.sql import functions as F

    curated_lib.has_class = connect_has_class
    original = account_engagement.build

    def build(accounts, events, opportunities, ds, observation=None):
        if observation is not None:
            usage = account_engagement.per_account(events, ds)
            live = accounts.select(F.col("Id").alias("_live_id"))
            every = live.join(usage, F.col("_live_id") == F.col("account_id"), "full")
            every.observe(
                observation,
                F.coalesce(F.sum("_deliveries"), F.lit(0)).alias("events_read"),
                F.coalesce(F.sum("events_total"), F.lit(0)).alias("events_distinct"),
                F.coalesce(F.sum(F.when(F.col("_live_id").isNotNull(), F.col("events_total"))), F.lit(0))
                .alias("events_matched"),
            ).groupBy().count().collect()  # a collect returns every observation's metrics
        return original(accounts, events, opportunities, ds, None)

    account_engagement.build = build
    return ["curated_lib.has_class", "account_engagement.build (events observation)"]


def client_main(args: argparse.Namespace) -> int:
    """``--client JOB``: run one job on the Connect server ``--remote`` and print its summary."""
    from tally.core.paths import spark_jobs_dir
    from tally.spark_session import default_conf

    sys.path.insert(0, str(spark_jobs_dir()))
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(args.remote).getOrCreate()
    try:
        for key, value in default_conf(MASTER).items():  # the session's runtime settings; the rest are the server's
            if key.startswith("spark.sql."):
                spark.conf.set(key, value)
        patch_for_connect()
        module = importlib.import_module(args.client)
        result = module.run(spark, args.lake, args.ds, reporting_currency=args.reporting_currency)
    finally:
        spark.stop()
    print(json.dumps(result, sort_keys=True, default=str), flush=True)
    return 0


# -- checking the outputs -----------------------------------------------------------------------------
def manifests_of(lake_uri: str, ds: str) -> dict[str, dict]:
    """Each curated output's committed manifest for ``ds``: rows, key checksum, schema, counts."""
    from tally.lake import Lake

    lake = Lake(lake_uri)
    found = {}
    for name in OUTPUTS:
        m = lake.read_manifest(f"curated/{name}", ds)
        found[name] = None if m is None else {
            "rows": m.row_count, "key_checksum": m.key_checksum, "schema": m.schema_fingerprint, "extra": m.extra}
    return found


def summary_outputs(summaries: list[dict]) -> dict[str, tuple]:
    """``curated.<name>`` -> (rows, key checksum) from the jobs' JSON summaries (all_curated's
    nests one per job under ``jobs``)."""
    out: dict[str, tuple] = {}
    for s in summaries:
        for nested in (s.get("jobs") or {}).values():
            out.update(summary_outputs([nested]))
        for name, rows in (s.get("key_checksums") and s.get("rows") or {}).items():
            out[name] = (rows, s["key_checksums"].get(name))
    return out


def check_outputs(results: dict[str, tuple[str, list[dict]]], ds: str) -> tuple[dict[str, dict], list[str]]:
    """``results``: option -> (lake uri, summaries). Returns the reference manifests and problems."""
    problems: list[str] = []
    reference: dict[str, dict] | None = None
    ref_option = ""
    for option, (lake_uri, summaries) in results.items():
        manifests = manifests_of(lake_uri, ds)
        for name, m in manifests.items():
            if m is None:
                problems.append(f"{option}: curated.{name} ds={ds} not committed")
        said = summary_outputs(summaries)
        for name, m in manifests.items():
            if m is not None and said.get(f"curated.{name}") != (m["rows"], m["key_checksum"]):
                problems.append(f"{option}: summary {said.get(f'curated.{name}')} != manifest of curated.{name}")
        if reference is None:
            reference, ref_option = manifests, option
            continue
        for name, m in manifests.items():
            if m is None or reference[name] is None:
                continue
            for what in ("rows", "key_checksum", "schema", "extra"):
                if m[what] != reference[name][what]:
                    problems.append(f"{option} vs {ref_option}: curated.{name} {what} differs: "
                                    f"{str(m[what])[:120]} != {str(reference[name][what])[:120]}")
    return reference or {}, problems


# -- the bench -----------------------------------------------------------------------------------------
@dataclass
class Option:
    """One way to run the four jobs: its per-job steps, the whole run's wall and CPU seconds,
    one-off costs (not in the per-ds time) and notes."""

    name: str
    steps: list[Step] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0
    one_off: dict[str, float] = field(default_factory=dict)
    notes: str = ""
    lake_uri: str = ""

    def timed(self, run: Callable[[], list[Step]]) -> None:
        began = time.perf_counter()
        self.steps = run()
        self.wall = time.perf_counter() - began
        self.cpu = sum(s.cpu for s in self.steps)
        print(f"  {self.name}: {self.wall:.1f} s wall, {self.cpu:.1f} s CPU", flush=True)


def copy_lake(template: Path, root: Path, name: str) -> str:
    target = root / name / "lake"
    shutil.copytree(template, target)
    return str(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=1000, help="live opportunity keys (default 1,000)")
    parser.add_argument("--events", type=int, default=None, help="activity events (default: opportunities / 2)")
    parser.add_argument("--reporting-currency", default="USD")
    parser.add_argument("--cds", action="store_true", help="also time a cold spark-submit with a CDS archive")
    parser.add_argument("--keep", default=None, help="work in (and keep) this folder instead of a temp one")
    parser.add_argument("--client", choices=JOBS, help=argparse.SUPPRESS)  # internal: one Connect client
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--ds", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args)

    missing = missing_connect_packages()
    if missing:
        print(f"warm_spark: the Spark Connect client needs {', '.join(missing)}; install with:\n"
              f"    {install_command(missing)}", file=sys.stderr)
        return 2
    jar = connect_jar()
    if jar is None:
        from tally.spark_session import spark_home

        print(f"warm_spark: no spark-connect_*.jar in {spark_home()}/jars; point SPARK_HOME at a Spark 4 "
              "distribution that has it (or add it with --jars)", file=sys.stderr)
        return 2

    sys.path.insert(0, str(BENCH_DIR))
    import spark_transform  # the raw-zone generator; puts spark_jobs/ on the path
    from rich.console import Console
    from rich.table import Table

    from tally.lake import Lake

    ds, reporting = spark_transform.RUN_DS, args.reporting_currency.upper()
    n_events = args.opportunities // 2 if args.events is None else args.events
    console = Console(width=None if sys.stdout.isatty() else 150)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tally-bench-warm-spark-"))
    root.mkdir(parents=True, exist_ok=True)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    options: dict[str, Option] = {}
    cds_runs: list[Option] = []
    server: ConnectServer | None = None
    try:
        template = root / "template"
        written = spark_transform.generate(Lake(str(template)), args.opportunities, n_events)
        console.print(f"raw zone: {sum(written.values()):,} rows in {len(written)} partitions (not timed); "
                      f"ds={ds}; work dir {root}")
        from tally.spark_submit import py_files

        py_files()  # the --py-files zip, built once before anything is timed

        # 2. one application (first: whatever warms the page cache helps the baseline after it)
        opt = options["one_app"] = Option("one_app", lake_uri=copy_lake(template, root, "one_app"),
                                          notes="spark-submit all_curated.py")
        console.print("one_app: one spark-submit of all_curated …")
        opt.timed(lambda: [submit("all_curated", opt.lake_uri, ds, reporting, logs / "one_app.log")])

        # 1. the baseline
        base = options["four_apps"] = Option("four_apps", lake_uri=copy_lake(template, root, "four_apps"),
                                             notes="4 × spark-submit (the DAG today)")
        console.print("four_apps: four spark-submit …")
        base.timed(lambda: [submit(j, base.lake_uri, ds, reporting, logs / "four_apps.log") for j in JOBS])

        # 3. Spark Connect
        server = ConnectServer(jar, logs / "connect-server.log")
        console.print(f"connect: starting the server ({jar.name}) …")
        start_s = server.start()
        cold_cpu = server.cpu()
        conn = options["connect"] = Option("connect", lake_uri=copy_lake(template, root, "connect"),
                                           one_off={"server start (port open)": start_s,
                                                    "server start CPU": cold_cpu},
                                           notes="4 Connect client processes on a fresh server (jobs monkeypatched, "
                                                 f"see the doc); server heap {server.heap}")
        console.print("connect: four client processes …")
        conn.timed(lambda: [connect_client(server, j, conn.lake_uri, ds, reporting, logs / "connect.log")
                            for j in JOBS])
        warm = options["connect_warm"] = Option("connect_warm", lake_uri=copy_lake(template, root, "connect_warm"),
                                                notes="the same, 2nd ds on the now-warm server")
        console.print("connect: again on the warm server …")
        warm.timed(lambda: [connect_client(server, j, warm.lake_uri, ds, reporting, logs / "connect.log")
                            for j in JOBS])
        server_rss = server.rss_mb()
        server.stop()
        conn.one_off["server RSS MB after 8 jobs"] = server_rss

        # 4. class data sharing: one cold spark-submit without and with the archive
        if args.cds:
            cds_dir = root / "cds"
            cds_dir.mkdir(exist_ok=True)
            archive = cds_dir / "spark-driver.jsa"
            quiet = "-Xlog:disable -Xlog:all=warning:stderr"  # JVM warnings off stdout (the summary line)
            job = JOBS[0]
            console.print(f"cds: dumping the archive (one {job} run) …")
            dumped = submit(job, copy_lake(template, root, "cds_dump"), ds, reporting, logs / "cds.log",
                            f"-XX:ArchiveClassesAtExit={archive} {quiet} -Xlog:cds=warning:file={cds_dir / 'dump.log'}")
            console.print(f"cds: one cold {job} without and with the archive …")
            plain = Option(f"{job} cold", lake_uri=copy_lake(template, root, "cds_without"),
                           notes="spark-submit, no archive")
            plain.timed(lambda: [submit(job, plain.lake_uri, ds, reporting, logs / "cds.log")])
            shared = Option(f"{job} cold + CDS", lake_uri=copy_lake(template, root, "cds_with"),
                            one_off={"archive dump run": dumped.wall, "archive MB": archive.stat().st_size / 2**20})
            shared.timed(lambda: [submit(job, shared.lake_uri, ds, reporting, logs / "cds.log",
                                         f"-XX:SharedArchiveFile={archive} {quiet} "
                                         f"-Xlog:cds=info:file={cds_dir / 'use.log'}")])
            mapped = "Mapped dynamic region" in (cds_dir / "use.log").read_text(errors="replace")
            shared.notes = f"-XX:SharedArchiveFile ({'mapped' if mapped else 'NOT mapped: see use.log'})"
            cds_runs = [plain, shared]
    except BaseException:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        if server is not None:
            server.stop()

    reference, problems = check_outputs({o.name: (o.lake_uri, [s.summary for s in o.steps])
                                         for o in options.values()}, ds)

    table = Table(title=f"The four curated jobs for one ds ({args.opportunities:,} opportunities, "
                        f"{n_events:,} events, {MASTER})")
    table.add_column("option")
    for job in JOBS:
        table.add_column(job.replace("_", " "), justify="right")
    for col in ("per-ds wall s", "vs four_apps", "CPU s", "CPU vs four_apps"):
        table.add_column(col, justify="right")
    base_wall = options["four_apps"].wall
    for opt in options.values():
        if opt.name == "one_app":
            in_app = opt.steps[0].summary.get("job_seconds", {})
            per_job = [f"({in_app.get(j, 0):.1f})" for j in JOBS]
        else:
            per_job = [f"{s.wall:.1f}" for s in opt.steps]
        table.add_row(opt.name, *per_job, f"{opt.wall:.1f}", f"{base_wall / opt.wall:.2f}×", f"{opt.cpu:.1f}",
                      f"{options['four_apps'].cpu / opt.cpu:.2f}×")
    console.print(table)
    for opt in options.values():
        one_off = "; one-off: " + ", ".join(f"{k} {v:.1f}" for k, v in opt.one_off.items()) if opt.one_off else ""
        console.print(f"  {opt.name}: {opt.notes}{one_off}")
    console.print("one_app's per-job figures (in brackets) are the jobs' own seconds inside the application; "
                  "CPU s: the processes' user+sys (connect: clients + the server JVM meanwhile)")
    outputs = ", ".join(f"{n} {m['rows']} rows {m['key_checksum']}" for n, m in reference.items() if m)
    console.print(f"outputs (every option): {outputs}")
    if cds_runs:
        cds_table = Table(title=f"One cold spark-submit of {JOBS[0]}, without and with a CDS archive")
        for col in ("run", "wall s", "CPU s", "one-off", "how"):
            cds_table.add_column(col, justify="right" if col in ("wall s", "CPU s") else "left")
        for opt in cds_runs:
            one_off = ", ".join(f"{k} {v:.1f}" for k, v in opt.one_off.items()) or "–"
            cds_table.add_row(opt.name, f"{opt.wall:.1f}", f"{opt.cpu:.1f}", one_off, opt.notes)
            mine = manifests_of(opt.lake_uri, ds)[JOBS[0]]
            if reference.get(JOBS[0]) and mine != reference[JOBS[0]]:
                problems.append(f"{opt.name}: curated.{JOBS[0]} differs from the other options'")
        console.print(cds_table)
    console.print(f"load average before {load_before}, after {Path('/proc/loadavg').read_text().split()[:3]} "
                  f"({os.cpu_count()} CPUs)" + (f"; logs in {logs}" if args.keep else ""))
    for problem in problems:
        console.print(f"[red]MISMATCH[/] {problem}")
    if not problems:
        console.print(f"[green]all {len(options)} options committed the same outputs[/]")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    one, con = options["one_app"].wall, options["connect"].wall
    print(f"warm_spark: four_apps_s={base_wall:.1f} one_app_s={one:.1f} connect_s={con:.1f} "
          f"one_app_speedup={base_wall / one:.2f} connect_speedup={base_wall / con:.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
