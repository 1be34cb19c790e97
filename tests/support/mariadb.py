"""A MariaDB server started for the test session (the ``mariadb`` fixture), and fresh databases on it.

Tests that need it import both names: ``from support.mariadb import fresh_mysql, mariadb``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from tally.sources.erp.dialect import MySQLConn
from tally_local.seed import mysql_connect
from tally_local.stack.process import free_port, port_open


def _mariadb_binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/libexec")
    install = shutil.which("mariadb-install-db")
    return (server, install) if server and install else None


@pytest.fixture(scope="session")
def mariadb() -> MySQLConn:
    """A throw-away MariaDB server on a free port (Debian's ``mariadb-server``, installed if missing)."""
    if _mariadb_binaries() is None:
        if os.geteuid() != 0:
            pytest.skip("MariaDB is not installed and we are not root: apt-get install -y mariadb-server")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mariadb-server"],
                              env=env, capture_output=True, text=True)
        if _mariadb_binaries() is None:
            pytest.fail(f"apt-get install mariadb-server failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    server, install = _mariadb_binaries()
    root = Path(tempfile.mkdtemp(prefix="tally-mariadb-", dir="/var/tmp" if os.geteuid() == 0 else None))
    user = "mysql" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    if os.geteuid() == 0:
        os.chmod(root, 0o755)
        shutil.chown(root, user, user)
    data, sock, log = root / "data", root / "mysqld.sock", root / "mariadb.log"
    subprocess.run([install, "--no-defaults", f"--datadir={data}", f"--user={user}", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True)
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                                 "--bind-address=127.0.0.1", f"--user={user}", "--skip-log-bin", "--skip-name-resolve",
                                 "--innodb-buffer-pool-size=64M", f"--pid-file={root / 'mariadb.pid'}"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (port_open(port) and sock.exists()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"MariaDB did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        password = secrets.token_hex(8)
        admin = mysql_connect(MySQLConn("localhost", port, "root", "", "mysql", unix_socket=str(sock)), autocommit=True)
        with admin.cursor() as cur:
            cur.execute("CREATE USER 'tally'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'tally'@'127.0.0.1'")
        admin.close()
        yield MySQLConn("127.0.0.1", port, "tally", password, "mysql")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fresh_mysql(server: MySQLConn) -> MySQLConn:
    """A new, empty database on the session's MariaDB server."""
    name = f"erp_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(server, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    return replace(server, dbname=name)
