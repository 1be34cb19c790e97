"""Where Tally's folders are: an environment variable each, else the checkout of an editable install.

A production image installs ``tally`` as a wheel and sets the variables (the folders are wherever
the image puts them). A development checkout installs it editable (``uv sync``, ``pip install -e``),
and its install metadata (``direct_url.json``) names the checkout, so nothing needs setting there.
No path is computed from where this file happens to be.

=========================  ===============================  =====================================
variable                   default (editable install)       what
=========================  ===============================  =====================================
``TALLY_HOME``             ``<project>/.tally``             state: profile, Data Docs, dbt work dir
``TALLY_EXPECTATIONS_DIR`` ``<project>/expectations``       the gates' suites
``TALLY_DBT_PROJECT_DIR``  ``<project>/dbt_project``        the dbt project (and its profiles.yml)
``TALLY_SPARK_JOBS_DIR``   ``<project>/spark_jobs``         the Spark jobs spark-submit runs
``TALLY_DAGS_DIR``         ``<project>/dags``               the DAGs (the local stack's Airflow)
``TALLY_PLUGINS_DIR``      ``<project>/plugins``            Airflow's plugins folder (local stack)
=========================  ===============================  =====================================
"""

from __future__ import annotations

import functools
import json
import os
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

HOME_ENV = "TALLY_HOME"
EXPECTATIONS_ENV = "TALLY_EXPECTATIONS_DIR"
DBT_PROJECT_ENV = "TALLY_DBT_PROJECT_DIR"
SPARK_JOBS_ENV = "TALLY_SPARK_JOBS_DIR"
DAGS_ENV = "TALLY_DAGS_DIR"
PLUGINS_ENV = "TALLY_PLUGINS_DIR"


class PathNotConfigured(RuntimeError):
    """A folder's variable is unset and ``tally`` is not an editable install (nothing to default to)."""


@functools.cache
def project_dir() -> Path | None:
    """The checkout an editable install of ``tally`` points at, from its ``direct_url.json``
    (``{"url": "file:///…", "dir_info": {"editable": true}}``); None for any other install."""
    # Every distribution named tally on the path, not only the first: a stray build's
    # ``tally.egg-info`` in the working directory has no direct_url.json and must not hide the
    # installed one's.
    for dist in metadata.distributions(name="tally"):
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        try:
            info = json.loads(text)
        except ValueError:
            continue
        url = urlparse(info.get("url", ""))
        if info.get("dir_info", {}).get("editable") and url.scheme == "file":
            return Path(unquote(url.path))
    return None


def _resolve(env: str, folder: str) -> Path:
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser().resolve()
    root = project_dir()
    if root is None:
        raise PathNotConfigured(f"set {env}: tally is not an editable install, so the {folder} folder has no default")
    return root / folder


def tally_home() -> Path:
    """State (the profile, Data Docs, the local stack; git-ignored): ``$TALLY_HOME`` or ``<project>/.tally``."""
    return _resolve(HOME_ENV, ".tally")


def expectations_dir() -> Path:
    """The gates' suites: ``$TALLY_EXPECTATIONS_DIR`` or ``<project>/expectations``."""
    return _resolve(EXPECTATIONS_ENV, "expectations")


def dbt_project_dir() -> Path:
    """``$TALLY_DBT_PROJECT_DIR`` or ``<project>/dbt_project``."""
    return _resolve(DBT_PROJECT_ENV, "dbt_project")


def spark_jobs_dir() -> Path:
    """``$TALLY_SPARK_JOBS_DIR`` or ``<project>/spark_jobs``."""
    return _resolve(SPARK_JOBS_ENV, "spark_jobs")


def dags_dir() -> Path:
    """``$TALLY_DAGS_DIR`` or ``<project>/dags``."""
    return _resolve(DAGS_ENV, "dags")


def plugins_dir() -> Path:
    """Airflow's plugins folder: ``$TALLY_PLUGINS_DIR`` or ``<project>/plugins``."""
    return _resolve(PLUGINS_ENV, "plugins")
