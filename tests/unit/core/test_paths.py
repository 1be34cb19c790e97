"""Where the project's folders are (tally.core.paths): the environment variable wins, else the
checkout of an editable install (its direct_url.json), else an error naming the variable to set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tally.core import paths

FOLDERS = [
    (paths.tally_home, paths.HOME_ENV, ".tally"),
    (paths.expectations_dir, paths.EXPECTATIONS_ENV, "expectations"),
    (paths.dbt_project_dir, paths.DBT_PROJECT_ENV, "dbt_project"),
    (paths.spark_jobs_dir, paths.SPARK_JOBS_ENV, "spark_jobs"),
    (paths.dags_dir, paths.DAGS_ENV, "dags"),
    (paths.plugins_dir, paths.PLUGINS_ENV, "plugins"),
]
IDS = [env for _, env, _ in FOLDERS]


class FakeDistribution:
    def __init__(self, direct_url: str | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        return self.direct_url


@pytest.fixture
def installed(monkeypatch):
    """Pretend ``tally`` was installed with the given direct_url.json (None: no such file)."""

    def install(direct_url: dict | None) -> None:
        text = None if direct_url is None else json.dumps(direct_url)
        monkeypatch.setattr(paths.metadata, "distributions", lambda name: [FakeDistribution(text)])
        paths.project_dir.cache_clear()

    yield install
    paths.project_dir.cache_clear()


@pytest.mark.parametrize(("resolve", "env", "folder"), FOLDERS, ids=IDS)
def test_the_environment_variable_wins(resolve, env, folder, monkeypatch, tmp_path, installed):
    installed({"url": "file:///somewhere/else", "dir_info": {"editable": True}})
    monkeypatch.setenv(env, str(tmp_path / "configured"))
    assert resolve() == tmp_path / "configured"


@pytest.mark.parametrize(("resolve", "env", "folder"), FOLDERS, ids=IDS)
def test_an_editable_install_defaults_to_its_checkout(resolve, env, folder, monkeypatch, installed):
    monkeypatch.delenv(env, raising=False)
    installed({"url": "file:///src/my%20tally", "dir_info": {"editable": True}})
    assert resolve() == Path("/src/my tally") / folder


@pytest.mark.parametrize("direct_url", [
    None,  # installed from an index: no direct_url.json
    {"url": "file:///wheels/tally-0.1.0-py3-none-any.whl", "archive_info": {}},  # a local wheel
    {"url": "file:///src/tally", "dir_info": {}},  # a folder, installed (copied) without -e
    {"url": "https://github.com/x/tally.git", "vcs_info": {"vcs": "git", "commit_id": "abc"}},
], ids=["index", "wheel", "not-editable", "vcs"])
def test_without_the_variable_anything_but_an_editable_install_is_an_error(direct_url, monkeypatch, installed):
    monkeypatch.delenv(paths.SPARK_JOBS_ENV, raising=False)
    installed(direct_url)
    with pytest.raises(paths.PathNotConfigured, match=r"^set TALLY_SPARK_JOBS_DIR: ") as raised:
        paths.spark_jobs_dir()
    assert "\n" not in str(raised.value)


def test_not_installed_at_all_is_the_same_error(monkeypatch):
    monkeypatch.delenv(paths.EXPECTATIONS_ENV, raising=False)
    monkeypatch.setattr(paths.metadata, "distributions", lambda name: [])
    paths.project_dir.cache_clear()
    try:
        with pytest.raises(paths.PathNotConfigured, match="set TALLY_EXPECTATIONS_DIR"):
            paths.expectations_dir()
    finally:
        paths.project_dir.cache_clear()


def test_a_stray_egg_info_does_not_hide_the_editable_install(monkeypatch, installed):
    """A build's ``tally.egg-info`` in the working directory comes first on sys.path and has no
    direct_url.json (it made every gate fail with "not an editable install")."""
    monkeypatch.delenv(paths.EXPECTATIONS_ENV, raising=False)
    editable = json.dumps({"url": "file:///src/tally", "dir_info": {"editable": True}})
    monkeypatch.setattr(paths.metadata, "distributions",
                        lambda name: [FakeDistribution(None), FakeDistribution(editable)])
    paths.project_dir.cache_clear()
    assert paths.expectations_dir() == Path("/src/tally/expectations")


def test_this_checkout_is_an_editable_install():
    """The development install the tests run from resolves to this repository."""
    assert paths.project_dir() == Path(__file__).resolve().parents[3]
