"""Airflow 3 for the embedded stack: environment, metadata DB migration, the four components and their log server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tally.core.config import PostgresConn
from tally.core.paths import dags_dir, plugins_dir
from tally_local.stack.process import PRIVATE_UMASK, private_log

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
# The scheduler and the triggerer would each start a log server on every interface (Airflow's
# ``serve_logs`` binds all addresses, with no setting for the host): they start with
# ``--skip-serve-logs`` and this one process serves the task and trigger logs on 127.0.0.1.
LOG_SERVER = "log-server"
SKIP_SERVE_LOGS = ("scheduler", "triggerer")
ADMIN_USER = "admin"


def loopback_hostname() -> str:
    """``[core] hostname_callable``: where the api-server reaches a task's log server."""
    return "127.0.0.1"


def venv_bin() -> Path:
    return Path(sys.executable).parent


def spark_home() -> str:
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    assert spec is not None and spec.origin is not None, "pyspark is not installed"
    return str(Path(spec.origin).parent)


def connections(state: dict) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` values for the stack's services (JSON form)."""
    pg = state["postgres"]
    conns: dict[str, dict] = {}
    for conn_id, db in (("tally_warehouse", "warehouse"), ("tally_erp", "erp")):
        conns[conn_id] = {
            "conn_type": "postgres", "host": "127.0.0.1", "port": pg["port"],
            "login": pg["user"], "password": pg["password"], "schema": db,
        }
    sf = state["sfsim"]
    conns["tally_salesforce"] = {
        "conn_type": "http", "host": f"https://127.0.0.1:{sf['port']}",
        "login": sf["username"], "password": sf["password"],
        "extra": {"security_token": sf["security_token"], "ca_bundle": sf["cert"], "api_version": "62.0"},
    }
    s3 = state["s3"]
    conns["tally_lake"] = {
        "conn_type": "generic", "host": state["lake_uri"],
        "login": s3["access_key"], "password": s3["secret_key"],
        "extra": {"endpoint_url": f"http://127.0.0.1:{s3['port']}", "region_name": "us-east-1"},
    }
    conns["tally_kafka"] = {"conn_type": "generic", "host": "127.0.0.1", "port": state["kafka"]["port"]}
    conns["spark_default"] = {
        "conn_type": "spark", "host": "local[2]",
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    }
    return {f"AIRFLOW_CONN_{k.upper()}": json.dumps(v) for k, v in conns.items()}


def schedule_on() -> bool:
    """Whether the local scheduler creates runs by itself (``TALLY_AIRFLOW_SCHEDULE``, default off)."""
    return os.environ.get("TALLY_AIRFLOW_SCHEDULE", "false").strip().lower() in ("1", "true", "yes", "on")


def environment(state: dict, home: Path) -> dict[str, str]:
    """Everything Airflow's processes (and the tasks they run) need, besides os.environ."""
    pg = state["postgres"]
    af = state["airflow"]
    meta = PostgresConn("127.0.0.1", pg["port"], pg["user"], pg["password"], "airflow")
    airflow_home = home / "airflow"
    api = f"http://127.0.0.1:{af['port']}"
    scheduled = schedule_on()
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir()),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_dir()),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # A DAG whose schedule is off locally (below) is shown paused, not as scheduled: `tally run`
        # unpauses tally_daily for the run it triggers; the others stay paused.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(not scheduled),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta.uri("postgresql+psycopg2"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(af["port"]),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": af["secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": af["jwt_secret"],
        # Locally, runs start when someone triggers them (`tally run`, `make demo`, the UI):
        # set TALLY_AIRFLOW_SCHEDULE=true before `tally up` to let the scheduler create the
        # scheduled and asset-triggered runs by itself, as production does.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(scheduled),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        # task logs hold row values: owner-only (Airflow chmods them to 0o775 / 0o664 by default)
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FOLDER_PERMISSIONS": "0o700",
        "AIRFLOW__LOGGING__FILE_TASK_HANDLER_NEW_FILE_PERMISSIONS": "0o600",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.loopback_hostname",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "TALLY_HOME": str(home),
        "SPARK_HOME": spark_home(),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_PROXY": "127.0.0.1,localhost",
        **connections(state),
    }
    if "log_port" in af:  # the stack's own log server (``LOG_SERVER``), on a port of its own
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = \
            str(af["log_port"])
    return env


def write_passwords(home: Path, password: str) -> None:
    path = home / "airflow" / "passwords.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({ADMIN_USER: password}, fh)


def migrate(env: dict[str, str], log: Path) -> None:
    """``airflow db migrate`` (idempotent)."""
    with open(private_log(log), "ab") as out:
        proc = subprocess.run(
            [str(venv_bin() / "airflow"), "db", "migrate"],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, umask=PRIVATE_UMASK,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"airflow db migrate failed (see {log}):\n{tail}")


def command(component: str) -> list[str]:
    """The command line of one Airflow component. The scheduler starts through
    ``tally.airflow.preload``, which imports Great Expectations (~9 s) and warms it up before
    Airflow's CLI runs: the LocalExecutor forks its workers, and they their task processes, from
    the scheduler, so gate tasks start with GX loaded instead of importing it each time."""
    skip = ["--skip-serve-logs"] if component in SKIP_SERVE_LOGS else []
    if component == "scheduler" and os.environ.get("TALLY_PRELOAD_GX", "true").lower() not in ("0", "false", "no"):
        return [sys.executable, "-m", "tally.airflow.preload", *component.split(), *skip]
    return [str(venv_bin() / "airflow"), *component.split(), *skip]


def log_server_command(port: int) -> list[str]:
    """Airflow's own log-serving app (``airflow.utils.serve_logs``) on 127.0.0.1 only."""
    return [sys.executable, "-m", "uvicorn", "airflow.utils.serve_logs.log_server:get_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
