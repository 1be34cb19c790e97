"""Run in a fresh process by test_ledger_view.py: Airflow's own API server app (as
``airflow api-server`` builds it) with the plugins it finds, asked for the ledger page with and
without a login. Prints one JSON line."""

from __future__ import annotations

import json
import sys

from airflow import plugins_manager
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.utils.db import initdb
from fastapi.testclient import TestClient

initdb()  # a fresh metadata database (the login checks revoked tokens there)
plugins, errors = plugins_manager._get_plugins()
client = TestClient(create_app())
anonymous = client.get("/tally/ledger", params={"ds": sys.argv[1]})
token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="oncall", role="VIEWER"))
page = client.get("/tally/ledger", params={"ds": sys.argv[1]}, headers={"Authorization": f"Bearer {token}"})
no_run = client.get("/tally/ledger", params={"dag_id": "tally_daily", "run_id": "manual__nope"},
                    headers={"Authorization": f"Bearer {token}"})
views = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"})
print(json.dumps({"plugins": [p.name for p in plugins], "errors": errors, "anonymous": anonymous.status_code,
                  "status": page.status_code, "no_run": [no_run.status_code, no_run.text], "page": page.text, "ui_plugins": views.json()}))
