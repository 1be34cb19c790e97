"""Local hygiene (issue 16, item 5): every service of the local stack listens on the loopback only,
and what it keeps (lake, logs, the Salesforce store, the Postgres cluster and its log) is readable
by its owner only. Before the fix Airflow's log servers (scheduler: 8793, triggerer: 8794) listened
on 0.0.0.0 and ::, `.tally/` was 0755 with its lake, logs and `postgres.log` 0644, and Postgres
logged a failing statement with its row values."""

from __future__ import annotations

import ipaddress
import os
import stat
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _process_tree(pids) -> set[int]:
    tree = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            tree |= {proc.pid, *(child.pid for child in proc.children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
    return tree


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.laddr.ip, conn.laddr.port, " ".join(psutil.Process(conn.pid).cmdline()[:4])))
    return out


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # a JVM's ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def _not_loopback(sockets) -> list:
    return [s for s in sockets if not _loopback(s[0])]


def _open_to_others(root: Path) -> list[tuple[str, str]]:
    """Entries under ``root`` (and root itself) a group or other user may read, write or enter."""
    found = []
    for path in (root, *root.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):  # a symlink's own mode means nothing
            continue
        if st.st_mode & 0o077:
            found.append((oct(stat.S_IMODE(st.st_mode)), str(path)))
    return found


def test_every_service_listens_on_the_loopback_only(airflow_stack):
    stack = airflow_stack
    pids = _process_tree([*stack.state["pids"].values(), stack._pg().pid()])
    sockets = _listening(pids)
    ports = {port for _, port, _ in sockets}
    expected = {stack.state[name]["port"] for name in ("postgres", "s3", "kafka", "sfsim", "airflow")}
    assert expected | {stack.state["airflow"]["log_port"]} <= ports, sockets  # we saw them all
    assert not _not_loopback(sockets), _not_loopback(sockets)


def test_the_spark_standalone_cluster_listens_on_the_loopback_only(tmp_path):
    from tally_local.spark_cluster import StandaloneCluster

    with StandaloneCluster(tmp_path / "spark", cores=1, memory="512m") as cluster:
        sockets = _listening(_process_tree(p.pid for p in cluster.procs))
        assert {cluster.port, cluster.ui_port} <= {port for _, port, _ in sockets}, sockets
        assert not _not_loopback(sockets), _not_loopback(sockets)
        assert not _open_to_others(cluster.workdir)


def test_the_stack_home_and_everything_in_it_is_the_owners_only(airflow_stack):
    from tally_local.stack.postgres import data_root

    stack = airflow_stack
    assert stat.S_IMODE(os.stat(stack.home).st_mode) == 0o700
    assert {"lake", "logs", "airflow", "sfsim"} <= {p.name for p in stack.home.iterdir()}
    assert not _open_to_others(stack.home)
    cluster = data_root(stack.home)
    assert stat.S_IMODE(os.stat(cluster / "postgres.log").st_mode) == 0o600
    assert not _open_to_others(cluster)


def test_postgres_does_not_log_a_failing_statements_row_values(stack):
    import psycopg

    marker = f"contact-{uuid.uuid4().hex[:8]}@example.com"
    with psycopg.connect(stack.postgres("postgres").conninfo(), autocommit=True) as conn:
        assert conn.execute("SHOW log_min_error_statement").fetchone()[0] == "panic"
        conn.execute("CREATE TEMP TABLE contacts (email text PRIMARY KEY)")
        conn.execute("INSERT INTO contacts VALUES (%s)", (marker,))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO contacts VALUES (%s)", (marker,))
    log = (stack._pg().log).read_text(errors="replace")
    assert "duplicate key value violates unique constraint" in log  # the error itself is logged
    assert marker not in log  # neither the STATEMENT nor the DETAIL line with the key's value
