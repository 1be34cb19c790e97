"""A small client for Airflow 3's REST API (``/api/v2``), used by `tally run`, `tally backfill` and
`make demo`.

Plain HTTP, no Airflow import: triggering and watching a run costs nothing at the CLI. Backfills
are Airflow 3's own (``/api/v2/backfills``: the scheduler creates and runs them, the UI shows
them and can pause or cancel them); one may be active per DAG at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import requests

TERMINAL = {"success", "failed"}
REPROCESS = ("none", "failed", "completed")  # Airflow's ReprocessBehavior
PAGE = 100


class ApiError(RuntimeError):
    """Airflow answered a request with an error: ``status`` and Airflow's ``detail``."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"{what} failed ({status}): {detail}")
        self.status, self.detail = status, detail


def _detail(r: requests.Response) -> str:
    """Airflow's ``detail`` (a string, or FastAPI's list of validation errors) in one line."""
    try:
        detail = r.json().get("detail", r.text)
    except ValueError:
        detail = r.text
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return " ".join(str(detail).split())[:500]


@dataclass
class TaskState:
    task_id: str
    state: str | None
    try_number: int
    duration: float | None


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        self.timeout = timeout
        self._login(username, password)

    def _login(self, username: str, password: str) -> None:
        r = self.http.post(f"{self.base_url}/auth/token", json={"username": username, "password": password},
                           timeout=self.timeout)
        if r.status_code >= 400:
            raise RuntimeError(f"Airflow login failed ({r.status_code}): {r.text[:200]}")
        self.http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def _get(self, path: str, **params) -> dict:
        r = self.http.get(f"{self.base_url}/api/v2{path}", params=params, timeout=self.timeout)
        r.raise_for_status()
        return r.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag-processor has parsed ``dag_id``; report import errors at once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.http.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=self.timeout)
            if r.status_code == 200:
                return r.json()
            errors = self._get("/importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError("DAG import errors:\n" + "\n".join(e.get("stack_trace", "") for e in errors))
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout:.0f}s (see the dag-processor log)")

    def unpause(self, dag_id: str) -> None:
        r = self.http.patch(f"{self.base_url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=self.timeout)
        r.raise_for_status()

    def trigger(self, dag_id: str, start: datetime, end: datetime, run_id: str | None = None,
                conf: dict | None = None) -> dict:
        body = {
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat(),
            "conf": conf or {},
        }
        if run_id:
            body["dag_run_id"] = run_id
        r = self.http.post(f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=self.timeout)
        if r.status_code >= 400:
            raise RuntimeError(f"trigger {dag_id} failed ({r.status_code}): {r.text[:500]}")
        return r.json()

    def runs_at(self, dag_id: str, logical_date: datetime) -> list[dict]:
        iso = logical_date.isoformat()
        return self._get(f"/dags/{dag_id}/dagRuns", logical_date_gte=iso, logical_date_lte=iso).get("dag_runs", [])

    def latest_run_at(self, dag_id: str, logical_date: datetime) -> dict | None:
        """The newest run of ``dag_id`` at ``logical_date`` (a cleared run keeps its id), or None."""
        runs = self.runs_at(dag_id, logical_date)
        return max(runs, key=lambda r: (r.get("start_date") or "", r.get("run_after") or ""), default=None)

    def clear(self, dag_id: str, run_id: str) -> None:
        r = self.http.post(f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear",
                           json={"dry_run": False}, timeout=self.timeout)
        if r.status_code >= 400:
            raise RuntimeError(f"clear {dag_id}/{run_id} failed ({r.status_code}): {r.text[:500]}")

    def start_run(self, dag_id: str, start: datetime, end: datetime, run_id: str) -> str:
        """Run ``dag_id`` for the interval: a new run, or (the ds ran before) its run cleared.

        Airflow keeps one run per logical date; every Tally stage replaces its ds, so
        re-running a cleared run is the idempotent way to redo a day.
        """
        existing = self.runs_at(dag_id, start)
        if not existing:
            self.trigger(dag_id, start, end, run_id=run_id)
            return run_id
        run_id = existing[0]["dag_run_id"]
        self.clear(dag_id, run_id)
        deadline = time.monotonic() + 30
        while self.run(dag_id, run_id)["state"] in TERMINAL and time.monotonic() < deadline:
            time.sleep(1)
        return run_id

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def tasks(self, dag_id: str, run_id: str) -> list[TaskState]:
        data = self._get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        return [TaskState(t["task_id"], t.get("state"), t.get("try_number", 0), t.get("duration"))
                for t in data.get("task_instances", [])]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        r = self.http.get(
            f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            headers={"Accept": "application/json"}, timeout=self.timeout)
        if not r.ok:
            return f"(log unavailable: {r.status_code})"
        lines = []
        for entry in r.json().get("content", []):
            if isinstance(entry, str):
                lines.append(entry)
                continue
            lines.append(f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')}".strip())
            for err in entry.get("error_detail") or []:
                lines.append(f"  {err.get('exc_type')}: {err.get('exc_value')}")
        return "\n".join(lines)

    # -- runs in a range, backfills ------------------------------------------------------------
    def _send(self, method: str, path: str, what: str, body: dict | None = None) -> dict:
        r = self.http.request(method, f"{self.base_url}/api/v2{path}", json=body, timeout=self.timeout)
        if r.status_code >= 400:
            raise ApiError(what, r.status_code, _detail(r))
        return r.json()

    def _pages(self, path: str, key: str, **params) -> list[dict]:
        out: list[dict] = []
        while True:
            page = self._get(path, limit=PAGE, offset=len(out), **params)
            items = list(page.get(key, []))
            out += items
            if not items or len(out) >= int(page.get("total_entries") or 0):
                return out

    def runs_between(self, dag_id: str, start: datetime, end: datetime, run_type: str | None = None) -> list[dict]:
        """Every run of ``dag_id`` whose logical date is in [start, end], by logical date."""
        params = {"logical_date_gte": start.isoformat(), "logical_date_lte": end.isoformat(), "order_by": "logical_date"}
        if run_type:
            params["run_type"] = run_type
        return self._pages(f"/dags/{dag_id}/dagRuns", "dag_runs", **params)

    @staticmethod
    def backfill_body(dag_id: str, start: datetime, end: datetime, *, reprocess: str = "none",
                      conf: dict | None = None, max_active_runs: int = 1, run_backwards: bool = False) -> dict:
        """``BackfillPostBody``: the runs whose logical dates are in [start, end] (both included)."""
        if reprocess not in REPROCESS:
            raise ValueError(f"reprocess must be one of {', '.join(REPROCESS)}, got {reprocess!r}")
        return {"dag_id": dag_id, "from_date": start.isoformat(), "to_date": end.isoformat(),
                "run_backwards": run_backwards, "dag_run_conf": conf or {}, "reprocess_behavior": reprocess,
                "max_active_runs": max_active_runs}

    def create_backfill(self, dag_id: str, start: datetime, end: datetime, **options) -> dict:
        """Create a backfill (``POST /backfills``); Airflow creates its runs at once and the scheduler
        runs them. ``ApiError`` 409 when one is already active for the DAG."""
        return self._send("POST", "/backfills", f"backfill {dag_id}", self.backfill_body(dag_id, start, end, **options))

    def backfill_dry_run(self, dag_id: str, start: datetime, end: datetime, **options) -> list[str]:
        """The logical dates (ISO) a backfill with these options would run (``POST /backfills/dry_run``):
        the ds it would skip (a run exists and the reprocess behaviour keeps it, or one is in flight)
        are absent."""
        found = self._send("POST", "/backfills/dry_run", f"backfill dry run {dag_id}",
                           self.backfill_body(dag_id, start, end, **options))
        return [b["logical_date"] for b in found.get("backfills", []) if b.get("logical_date")]

    def backfills(self, dag_id: str, active_only: bool = False) -> list[dict]:
        """The DAG's backfills, oldest first; ``active_only``: those neither completed nor cancelled
        (a cancelled backfill is marked completed)."""
        found = self._pages("/backfills", "backfills", dag_id=dag_id, order_by="id")
        return [b for b in found if b.get("completed_at") is None] if active_only else found

    def active_backfill(self, dag_id: str) -> dict | None:
        """The DAG's active backfill (Airflow allows one), or None."""
        return next(reversed(self.backfills(dag_id, active_only=True)), None)

    def backfill(self, backfill_id: int) -> dict:
        return self._get(f"/backfills/{int(backfill_id)}")

    def pause_backfill(self, backfill_id: int) -> dict:
        return self._send("PUT", f"/backfills/{int(backfill_id)}/pause", f"pause backfill {backfill_id}")

    def unpause_backfill(self, backfill_id: int) -> dict:
        return self._send("PUT", f"/backfills/{int(backfill_id)}/unpause", f"unpause backfill {backfill_id}")

    def cancel_backfill(self, backfill_id: int) -> dict:
        """Pause it and fail its queued runs (a running run finishes); marks it completed."""
        return self._send("PUT", f"/backfills/{int(backfill_id)}/cancel", f"cancel backfill {backfill_id}")
