"""The Spark jobs' library for ``spark-submit --py-files`` (tally.spark_submit.py_files): what the
zip holds, that it is self-contained, and that it is rebuilt exactly when a source changes."""

from __future__ import annotations

import ast
import shutil
import zipfile
from pathlib import Path

from tally import spark_submit

REPO = Path(__file__).resolve().parents[3]


def test_the_zip_holds_the_jobs_and_the_tally_modules_they_import(tmp_path):
    names = set(zipfile.ZipFile(spark_submit.py_files(tmp_path)).namelist())
    jobs = {p.name for p in (REPO / "spark_jobs").glob("*.py")}
    assert "curated_lib.py" in jobs and jobs <= names
    tally = {n for n in names if n.startswith("tally/")}
    assert {"tally/__init__.py", "tally/contract.py", "tally/catalog.py", "tally/lake/__init__.py",
            "tally/lake/checksum.py", "tally/spark_session.py"} <= tally
    allowed = tuple(m.replace(".", "/") for m in (*spark_submit.JOB_IMPORTS, *spark_submit.ZIP_ALSO))
    packages = {f"{m.rsplit('.', 1)[0].replace('.', '/')}/__init__.py" for m in spark_submit.ZIP_ALSO}
    assert all(n == "tally/__init__.py" or n in packages or n.startswith(allowed) for n in tally), sorted(tally)
    assert "tally/spark_submit.py" not in names and "tally/core/paths.py" not in names  # launching is not shipped


def test_every_tally_import_in_the_zip_resolves_inside_it(tmp_path):
    """Nothing the jobs reach needs a Tally module the zip lacks (an installed tally is not assumed)."""
    archive = zipfile.ZipFile(spark_submit.py_files(tmp_path))
    names = set(archive.namelist())
    for name in names:
        for node in ast.walk(ast.parse(archive.read(name))):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            for module in (m for m in modules if m == "tally" or m.startswith("tally.")):
                path = module.replace(".", "/")
                assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"{name} imports {module}"


def test_content_addressed_rebuilt_when_a_source_changes(tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    shutil.copytree(REPO / "spark_jobs", jobs, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("TALLY_SPARK_JOBS_DIR", str(jobs))
    first = spark_submit.py_files(tmp_path / "out")
    assert spark_submit.py_files(tmp_path / "out") == first  # unchanged: the same zip, not rebuilt
    assert Path(first).read_bytes() == Path(spark_submit.py_files(tmp_path / "again")).read_bytes()  # reproducible
    (jobs / "curated_lib.py").write_text((jobs / "curated_lib.py").read_text() + "\n# changed\n")
    second = spark_submit.py_files(tmp_path / "out")
    assert second != first and Path(first).exists()
    assert zipfile.ZipFile(second).read("curated_lib.py").endswith(b"# changed\n")


def test_submit_command_ships_the_library(tmp_path, monkeypatch):
    monkeypatch.setenv("TALLY_HOME", str(tmp_path))
    cmd = spark_submit.submit_command("rep_rankings", ["--ds", "2024-01-01"], master="local[2]")
    library = cmd[cmd.index("--py-files") + 1]
    assert Path(library).parent == tmp_path / "spark" and Path(library).is_file()
    assert cmd[cmd.index("--py-files") + 2:] == [str(REPO / "spark_jobs" / "rep_rankings.py"), "--ds", "2024-01-01"]
