"""The dbt stage: one ``dbt build`` for a ds, with the contract's business rules as vars."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tally import contract
from tally.core.errors import DataProblem
from tally.core.paths import dbt_project_dir, tally_home
from tally.core.resources import Resources, check_ds


def dbt_env(res: Resources) -> dict[str, str]:
    wh = res.warehouse
    return {
        "TALLY_DBT_HOST": wh.host, "TALLY_DBT_PORT": str(wh.port), "TALLY_DBT_USER": wh.user,
        "TALLY_DBT_PASSWORD": wh.password, "TALLY_DBT_DBNAME": wh.dbname,
    }


def dbt_vars(ds: str) -> str:
    """``--vars`` for a build: the ds and the business rules (``tally.contract.dbt_vars``)."""
    return json.dumps({"ds": ds, **contract.dbt_vars()})


def dbt_build(res: Resources, ds: str, select: str | None = None) -> None:
    check_ds(ds)
    work = tally_home() / "dbt"
    dbt = str(Path(sys.executable).parent / "dbt")
    cmd = [dbt, "build", "--project-dir", str(dbt_project_dir()), "--profiles-dir", str(dbt_project_dir()),
           "--target-path", str(work / "target"), "--vars", dbt_vars(ds)]
    if select:
        cmd += ["--select", select]
    env = {**os.environ, **dbt_env(res), "DBT_LOG_PATH": str(work / "logs"), **res.extra_env}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(proc.stdout[-20000:])
    if proc.returncode != 0:
        failed = [line for line in proc.stdout.splitlines() if re.search(r"\b(ERROR|FAIL)\b", line)]
        raise DataProblem(f"dbt build failed (exit {proc.returncode}); failing nodes:\n" + "\n".join(failed[-30:])
                          + f"\n--- tail ---\n{proc.stdout[-2000:]}\n{proc.stderr[-1000:]}")
