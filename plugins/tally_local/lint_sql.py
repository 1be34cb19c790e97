"""``make lint-sql``: sqlfluff with the dbt templater over the dbt project.

The dbt templater compiles every model through dbt itself, and dbt lists the warehouse's relations
before it compiles anything: linting needs a database to connect to. With ``TALLY_DBT_HOST`` set
(a real warehouse) that one is used; otherwise a throwaway embedded Postgres is started for the
lint (about a second) and removed afterwards. The business rules' dbt vars come from
``tally.contract`` (the project's ``.sqlfluff`` holds no copy of them).

Usage: ``python -m tally_local.lint_sql DBT_PROJECT_DIR [PATH ...]`` (paths relative to the project;
default ``models tests snapshots``). Exit status: sqlfluff's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tally import contract


@contextlib.contextmanager
def warehouse_env() -> Iterator[dict[str, str]]:
    """``TALLY_DBT_*`` for dbt's profile: the environment's if it names a host, else a throwaway
    embedded Postgres for the duration."""
    if os.environ.get("TALLY_DBT_HOST"):
        yield {}
        return
    from tally_local.stack.postgres import EmbeddedPostgres
    from tally_local.stack.process import free_port

    root = Path(tempfile.mkdtemp(prefix="tally-lint-pg-", dir="/var/tmp" if os.geteuid() == 0 else None))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # the server runs as the unprivileged system user
    pg = EmbeddedPostgres(root / "pg", free_port(), "tally", secrets.token_hex(12))
    try:
        pg.start()
        pg.create_databases(("warehouse",))
        yield {"TALLY_DBT_HOST": "127.0.0.1", "TALLY_DBT_PORT": str(pg.port), "TALLY_DBT_USER": pg.superuser,
               "TALLY_DBT_PASSWORD": pg.password, "TALLY_DBT_DBNAME": "warehouse"}
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def vars_config() -> str:
    """A sqlfluff config section giving the dbt templater the contract's vars."""
    lines = [f"{name} = {value}" for name, value in contract.dbt_vars().items()]
    return "[sqlfluff:templater:dbt:context]\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m tally_local.lint_sql DBT_PROJECT_DIR [PATH ...]", file=sys.stderr)
        return 2
    project, paths = Path(args[0]).resolve(), args[1:] or ["models", "tests", "snapshots"]
    sqlfluff = Path(sys.executable).parent / "sqlfluff"
    with tempfile.TemporaryDirectory(prefix="tally-lint-") as scratch, warehouse_env() as env:
        extra = Path(scratch) / "vars.cfg"
        extra.write_text(vars_config())
        target = Path(scratch) / "target"  # dbt's compile output stays out of the project
        return subprocess.run(
            [str(sqlfluff), "lint", "--config", str(extra), *paths], cwd=project,
            env={**os.environ, **env, "DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(Path(scratch) / "logs")},
        ).returncode


if __name__ == "__main__":
    raise SystemExit(main())
