"""The stack's home is its owner's only (issue 16, item 5): what the services write is made under
umask 077, an older home (0755, files 0644) is tightened, and as root a cluster an older stack
kept inside the home moves out before the home closes (``tallypg`` could not reach it)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import time
from pathlib import Path

import pytest

from tally_local.stack.manager import close_to_others
from tally_local.stack.postgres import data_root, move_out_of_home
from tally_local.stack.process import alive, spawn


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_service_writes_its_log_and_files_for_its_owner_only(tmp_path):
    log = tmp_path / "logs" / "svc.log"
    out = tmp_path / "written-by-the-service"
    pid = spawn(["sh", "-c", f"umask; mkdir {out}; echo rows > {out}/part.csv"], log)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().strip() == "0077"
    assert (_mode(log.parent), _mode(log)) == (0o700, 0o600)
    assert (_mode(out), _mode(out / "part.csv")) == (0o700, 0o600)


def test_an_older_home_is_closed_to_others(tmp_path):
    home = tmp_path / ".tally"
    (home / "lake" / "raw").mkdir(parents=True)
    (home / "lake" / "raw" / "part.parquet").write_text("contact e-mails")
    (home / "logs").mkdir()
    (home / "logs" / "s3.log").write_text("")
    (home / "airflow").mkdir()
    (home / "airflow" / "latest").symlink_to(home / "logs")
    for path in (home, home / "lake", home / "lake" / "raw", home / "logs", home / "airflow"):
        os.chmod(path, 0o755)
    os.chmod(home / "lake" / "raw" / "part.parquet", 0o644)
    os.chmod(home / "logs" / "s3.log", 0o664)
    close_to_others(home)
    assert _mode(home) == 0o700
    assert {p.name: _mode(p) for p in home.rglob("*") if not p.is_symlink()} == {
        "lake": 0o700, "raw": 0o700, "part.parquet": 0o600, "logs": 0o700, "s3.log": 0o600, "airflow": 0o700}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root keeps the cluster outside the home")
def test_as_root_a_cluster_left_inside_an_older_home_moves_out_before_the_home_closes():
    from tally_local.stack.postgres import PG_SYSTEM_USER, ensure_system_user

    ensure_system_user()
    base = Path("/tmp") / f"tally-move-{os.getpid()}"  # every parent open to tallypg, as an older home was
    home = base / ".tally"
    (home / "postgres" / "data").mkdir(parents=True)
    (home / "postgres" / "data" / "PG_VERSION").write_text("18\n")
    os.chmod(base, 0o755)
    os.chmod(home, 0o755)
    try:
        move_out_of_home(home)
        close_to_others(home)
        target = data_root(home)
        assert str(target).startswith("/var/tmp/tally-postgres-")
        assert (target / "data" / "PG_VERSION").read_text() == "18\n"
        assert not (home / "postgres").exists()
        assert os.stat(target / "data" / "PG_VERSION").st_uid == pwd.getpwnam(PG_SYSTEM_USER).pw_uid
        move_out_of_home(home)  # once only: nothing left to move
        assert (target / "data").is_dir()
    finally:
        shutil.rmtree(data_root(home), ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
