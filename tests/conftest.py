"""Session-scoped real services for the integration and end-to-end tests.

One embedded stack (Postgres, moto S3, tansu Kafka, the Salesforce simulator) is started
for the whole session under a temporary TALLY_HOME, never the developer's .tally/; Airflow
joins it only when an end-to-end test asks for it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# py4j's __del__ logs at INFO after pytest has closed the streams ("Logging error" noise).
logging.getLogger("py4j").setLevel(logging.WARNING)

_HOME = Path(os.environ.get("TALLY_TEST_HOME", "/tmp")) / f"tally-test-{uuid.uuid4().hex[:8]}"
os.environ["TALLY_HOME"] = str(_HOME)


@pytest.fixture(scope="session")
def stack():
    from tally_local.stack.manager import Stack

    s = Stack(home=_HOME)
    try:
        s.up(progress=lambda _: None, with_airflow=False)
        yield s
    finally:  # also when start-up itself failed half-way
        s.remove(progress=lambda _: None)


@pytest.fixture(scope="session")
def airflow_stack(stack):
    """The same stack with Airflow's scheduler, api-server, dag-processor and triggerer."""
    stack._start_airflow(lambda _: None)
    stack.write_env_file()
    return stack


def _fresh_database(stack, prefix: str) -> str:
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = stack.postgres("postgres")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


@pytest.fixture(scope="session")
def new_database(stack):
    """``new_database(prefix)``: a PostgresConn to a new, empty database on the stack's server."""
    from tally.core.config import PostgresConn

    def make(prefix: str) -> PostgresConn:
        base = stack.postgres("postgres")
        return PostgresConn(base.host, base.port, base.user, base.password, _fresh_database(stack, prefix))

    return make


@pytest.fixture
def warehouse_conn(new_database):
    """A PostgresConn to a new, empty database (one per test)."""
    return new_database("wh")


@pytest.fixture
def warehouse_dsn(warehouse_conn) -> str:
    return warehouse_conn.conninfo()


@pytest.fixture
def lake(tmp_path):
    from tally.lake import Lake

    return Lake(str(tmp_path / "lake"))


@pytest.fixture(scope="session")
def s3_lake(stack) -> Iterator:
    """A lake on the moto S3 server, reached over HTTP like production S3."""
    from tally.lake import Lake, S3Options

    s3 = stack.state["s3"]
    yield Lake(f"s3://{s3['bucket']}/test-{uuid.uuid4().hex[:6]}",
               S3Options(endpoint_url=f"http://127.0.0.1:{s3['port']}", access_key=s3["access_key"],
                         secret_key=s3["secret_key"]))
