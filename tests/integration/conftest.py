"""Shared fixtures for integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the whole pytest session (2 cores here: start the JVM once)."""
    from tally.spark_session import build_session

    session = build_session("tally-integration-tests", master="local[2]")
    yield session
    session.stop()

