"""Launching a Spark job: the ``spark-submit`` command line, its environment, and the library it ships.

The jobs (``spark_jobs/``, found through ``tally.core.paths.spark_jobs_dir``) import
``curated_lib`` and a few Tally modules (``tally.contract``, ``tally.catalog``, ``tally.lake``,
``tally.spark_session``). They get them from ``--py-files``: :func:`py_files` zips
``spark_jobs/*.py`` and those modules (their Tally imports, followed) into the state dir, named
by the content's hash, so a changed source gives a new zip and an unchanged one is reused.
The session itself (built inside the job) is ``tally.spark_session``; this module is never
shipped.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tally.core.paths import spark_jobs_dir, tally_home
from tally.spark_session import DEFAULT_LOCAL_IP, spark_home

# Tally modules a job may import (tests/unit/test_import_rules.py holds spark_jobs/ to them);
# the zip holds them and what they import of Tally in turn (tally.lake.verify raises
# tally.core.errors.DataProblem).
JOB_IMPORTS = ("tally.contract", "tally.catalog", "tally.lake", "tally.spark_session")
ZIP_ALSO = ("tally.core.errors",)
# 1980-01-01: zip's earliest date, so a zip's bytes depend on its content only
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def spark_submit_bin() -> str:
    return os.path.join(spark_home(), "bin", "spark-submit")


def spark_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``spark-submit`` subprocess (a full copy of ``base``/``os.environ``).

    Sets SPARK_HOME (the pyspark folder unless already set), PYSPARK_PYTHON and
    PYSPARK_DRIVER_PYTHON (this interpreter, so the job sees the same packages) and
    SPARK_LOCAL_IP (unless set). The jobs' own library comes with ``--py-files`` (:func:`py_files`).
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("SPARK_HOME", spark_home())
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", env["PYSPARK_PYTHON"])
    env.setdefault("SPARK_LOCAL_IP", DEFAULT_LOCAL_IP)
    return env


def job_path(job: str) -> Path:
    """``spark_jobs/<job>.py``."""
    return spark_jobs_dir() / f"{job}.py"


def _tally_root() -> Path:
    """The folder of the installed ``tally`` package (found, not imported)."""
    spec = importlib.util.find_spec("tally")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the tally package is not installed in this Python environment")
    return Path(next(iter(spec.submodule_search_locations)))


def _module_file(root: Path, module: str) -> Path | None:
    """The file of ``tally.<...>`` under ``root`` (the ``tally`` folder), or None (not a module:
    a name imported from one)."""
    parts = module.split(".")[1:]
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if parts and base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _tally_imports(path: Path) -> set[str]:
    """Every ``tally`` module ``path`` imports (also inside functions), with the names imported from them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {m for m in found if m == "tally" or m.startswith("tally.")}


def library_files(jobs: Iterable[Path] | None = None) -> dict[str, Path]:
    """What the jobs need besides Spark: archive name -> file. Every ``spark_jobs/*.py`` (``curated_lib``
    and the job modules ``all_curated`` imports) at the top level, and the Tally modules they import,
    followed through their own Tally imports, with their packages' ``__init__.py``."""
    jobs = sorted(jobs if jobs is not None else spark_jobs_dir().glob("*.py"))
    root = _tally_root()
    files: dict[str, Path] = {job.name: job for job in jobs}
    todo = list(jobs)
    seen: set[Path] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in sorted(_tally_imports(current)):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # the module and every package above it
                found = _module_file(root, ".".join(parts[:depth]))
                if found is not None:
                    files[found.relative_to(root.parent).as_posix()] = found
                    todo.append(found)
    return dict(sorted(files.items()))


def py_files(directory: Path | str | None = None) -> str:
    """The zip for ``spark-submit --py-files``: :func:`library_files`, in ``directory`` (default
    ``$TALLY_HOME/spark``) as ``jobs-<sha256 prefix>.zip``; built only when no zip of that content
    exists yet. Returns its path."""
    files = library_files()
    digest = hashlib.sha256()
    contents = {}
    for name, path in files.items():
        contents[name] = path.read_bytes()
        digest.update(name.encode() + b"\0" + hashlib.sha256(contents[name]).digest())
    out_dir = Path(directory) if directory else tally_home() / "spark"
    target = out_dir / f"jobs-{digest.hexdigest()[:16]}.zip"
    if target.is_file():
        return str(target)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(target)  # atomic: a concurrent task sees the old state or the whole zip
    return str(target)


def submit_command(job: str, args: Sequence[str], master: str | None = None,
                   conf: Mapping[str, str] | None = None, library: str | None = None) -> list[str]:
    """``spark-submit [--master M] [--conf k=v ...] --py-files <library> spark_jobs/<job>.py args...``;
    ``library`` defaults to :func:`py_files`."""
    cmd = [spark_submit_bin()]
    if master:
        cmd += ["--master", master]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, "--py-files", library or py_files(), str(job_path(job)), *args]
