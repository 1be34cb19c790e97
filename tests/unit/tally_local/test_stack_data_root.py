"""Where the embedded Postgres cluster lives, and that a throw-away stack leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tally_local.stack.postgres import data_root, remove_data_root


@pytest.fixture()
def open_dir():
    """A directory every user can traverse, as is every parent (/tmp; not pytest's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="tally-data-root-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def closed_home(open_dir):
    """A stack home under a directory other users cannot enter."""
    home = open_dir / "closed" / ".tally"
    home.mkdir(parents=True)
    os.chmod(open_dir / "closed", 0o700)
    return home


def test_a_home_others_can_reach_keeps_its_cluster_inside(open_dir):
    home = open_dir / ".tally"
    home.mkdir(mode=0o755)
    root = data_root(home)
    assert root == home / "postgres"
    root.mkdir()
    remove_data_root(home)  # inside home: deleting home deletes it
    assert root.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root moves the cluster out of a closed home")
def test_a_closed_home_as_root_keeps_its_cluster_under_var_tmp_and_remove_deletes_it(closed_home):
    home = closed_home
    root = data_root(home)
    assert str(root).startswith("/var/tmp/tally-postgres-")
    (root / "data").mkdir(parents=True)
    try:
        assert data_root(home) == root  # the same home finds its cluster again
        remove_data_root(home)
        assert not root.exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root moves the cluster out of a closed home")
def test_a_fresh_state_does_not_reuse_a_cluster_left_behind_by_a_deleted_home(closed_home):
    """"Delete .tally/ to reset": the next stack gets a new password, so the old cluster under
    /var/tmp (which only knows the old one) must go too."""
    from tally_local.stack.manager import Stack

    home = closed_home
    stale = data_root(home)
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "PG_VERSION").write_text("18\n")
    try:
        stack = Stack(home=home)
        stack._ensure_state()
        assert not stale.exists()
        (stale / "data").mkdir(parents=True)  # a cluster the current state made stays
        Stack(home=home)._ensure_state()
        assert (stale / "data").is_dir()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
