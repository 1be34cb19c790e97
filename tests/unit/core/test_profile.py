"""A deployment profile round-trips through its JSON file, and the CLI finds it from the environment."""

from __future__ import annotations

import os
import stat

from tally.core import profile
from tally.core.config import PostgresConn, SalesforceConn


def _profile(**overrides) -> profile.Profile:
    base = dict(
        warehouse=PostgresConn("db.example", 5432, "tally", "s3cret", "warehouse"),
        lake="s3://lake/prefix",
        erp=PostgresConn("erp.example", 5433, "reader", "pw", "erp"),
        salesforce=SalesforceConn("https://login.example", "u@example", "pw", "tok", ca_bundle="/ca.pem"),
        airflow=profile.AirflowApi("http://airflow.example", "oncall", "pw"),
        as_of="2026-05-01T00:00:00+00:00",
    )
    return profile.Profile(**{**base, **overrides})


def test_a_profile_round_trips_and_is_private(tmp_path):
    path = tmp_path / "profile.json"
    written = _profile()
    profile.write(written, path)
    assert profile.load(path) == written
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    minimal = _profile(erp=None, salesforce=None, airflow=None, as_of=None)
    profile.write(minimal, path)
    assert profile.load(path) == minimal


def test_where_the_profile_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("TALLY_PROFILE", raising=False)
    monkeypatch.setenv("TALLY_HOME", str(tmp_path / "home"))
    assert profile.profile_path() == (tmp_path / "home" / "profile.json").resolve()
    assert profile.load() is None
    monkeypatch.setenv("TALLY_PROFILE", str(tmp_path / "prod.json"))
    assert profile.profile_path() == tmp_path / "prod.json"
    assert profile.profile_path(tmp_path / "other") == tmp_path / "other" / "profile.json"


def test_the_default_ds_is_the_day_before_as_of():
    assert _profile().default_ds() == "2026-04-30"


def test_resources_point_at_the_profile(tmp_path):
    res = _profile(lake=str(tmp_path / "lake")).resources(run_id="r1")
    assert res.warehouse.host == "db.example" and res.erp.dbname == "erp" and res.run_id == "r1"
    assert res.salesforce.ca_bundle == "/ca.pem"
