"""Parse time matters: importing a DAG file must not load data libraries or the task callables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = sorted((Path(__file__).resolve().parents[3] / "dags").glob("*.py"))
HEAVY = ["psycopg", "pyarrow", "pandas", "great_expectations", "pyspark", "simple_salesforce", "kafka",
         "tally.catalog", "tally.core", "tally.gates", "tally.stages", "tally.load", "tally.airflow.tasks",
         "tally.airflow.connections"]


@pytest.mark.parametrize("dag_file", DAGS, ids=lambda p: p.name)
def test_dag_file_has_no_heavy_top_level_imports(dag_file):
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(dag_file)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded at parse time: {out.stdout.strip()}"
