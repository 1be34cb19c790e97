"""A resilient Salesforce client: simple-salesforce for REST, plus retry, re-login, throttling
and Bulk API 2.0 query jobs with locator paging.

Every HTTP call goes through ``ResilientSalesforce.call``:

* ``REQUEST_LIMIT_EXCEEDED`` (403), 5xx and connection resets are retried with exponential
  backoff and full jitter, up to ``max_attempts``;
* ``INVALID_SESSION_ID`` (401) triggers one re-login, then the call is repeated;
* ``Sforce-Limit-Info`` is read after each call: above ``slowdown_ratio`` of the daily
  allowance the client pauses between calls, so a long sync slows down before the org's
  limit instead of running into it;
* when retries are exhausted, ``SalesforceUnavailable`` names what failed and what to do.

Paging is done call by call (``query`` then ``query_more``; Bulk results by locator), so a
retried call resumes where the sync was instead of starting again.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from tally.core.config import SalesforceConn
from tally.sources.salesforce.auth import VerifyingSession, login, login_client_credentials

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    slowdown_ratio: float = 0.8  # of the daily API allowance
    slowdown_pause: float = 2.0  # seconds between calls at 100 % of the allowance

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with full jitter (attempt 1 -> up to base_delay)."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class SalesforceUnavailable(RuntimeError):
    """Retries are exhausted: a transient problem lasted too long."""


@dataclass
class CallStats:
    calls: int = 0
    retries: int = 0
    relogins: int = 0
    throttled_seconds: float = 0.0
    api_usage: tuple[int, int] | None = None
    errors: list[str] = field(default_factory=list)


def _is_rate_limit(exc: SalesforceError) -> bool:
    return isinstance(exc, SalesforceRefusedRequest) and "REQUEST_LIMIT_EXCEEDED" in str(exc.content)


def _is_server_error(exc: SalesforceError) -> bool:
    return isinstance(exc, SalesforceGeneralError) and int(getattr(exc, "status", 0) or 0) >= 500


class ResilientSalesforce:
    def __init__(self, conn: SalesforceConn, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, seed: int | None = None) -> None:
        self.conn = conn
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.stats = CallStats()
        # requests ignores Session.verify when REQUESTS_CA_BUNDLE is set (requests#3829).
        self.session = VerifyingSession(conn.ca_bundle) if conn.ca_bundle else requests.Session()
        self._sf: Salesforce | None = None

    # -- session -------------------------------------------------------------------
    @property
    def sf(self) -> Salesforce:
        if self._sf is None:
            self._login()
        assert self._sf is not None
        return self._sf

    def _login(self) -> None:
        c = self.conn
        if not c.username and c.client_id:
            session_id, instance_url = self._retrying("login (client credentials)", lambda: login_client_credentials(
                c.login_url, c.client_id, c.client_secret or "", session=self.session))
        else:
            session_id, instance_url = self._retrying("login", lambda: login(
                c.login_url, c.username, c.password, c.security_token, api_version=c.api_version,
                session=self.session))
        self._sf = Salesforce(instance_url=instance_url, session_id=session_id, session=self.session,
                              version=self.conn.api_version)

    # -- the one way calls are made -----------------------------------------------------
    def call(self, what: str, fn: Callable[[Salesforce], T]) -> T:
        """Run ``fn(sf)`` with retries, one re-login on an expired session, and throttling."""
        relogged = False

        def attempt() -> T:
            nonlocal relogged
            try:
                return fn(self.sf)
            except SalesforceExpiredSession:
                if relogged:
                    raise
                relogged = True
                self.stats.relogins += 1
                log.warning("Salesforce session expired during %s: logging in again", what)
                self._login()
                return fn(self.sf)

        result = self._retrying(what, attempt)
        self._throttle()
        return result

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        last: Exception | None = None
        for n in range(1, self.policy.max_attempts + 1):
            self.stats.calls += 1
            try:
                return fn()
            except SalesforceError as exc:
                if not (_is_rate_limit(exc) or _is_server_error(exc)):
                    raise
                last = exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = exc
            reason = _describe(last)
            self.stats.errors.append(reason)
            if n == self.policy.max_attempts:
                break
            pause = self.policy.delay(n, self.rng)
            self.stats.retries += 1
            log.warning("Salesforce %s failed (%s); retry %d/%d in %.1fs", what, reason, n,
                        self.policy.max_attempts - 1, pause)
            self.sleep(pause)
        raise SalesforceUnavailable(
            f"Salesforce {what}: gave up after {self.policy.max_attempts} attempts; last error: {_describe(last)}"
        ) from last

    def _throttle(self) -> None:
        usage = (self._sf.api_usage or {}).get("api-usage") if self._sf is not None else None
        if usage is None:
            return
        used, total = int(usage.used), int(usage.total)
        self.stats.api_usage = (used, total)
        ratio = used / total if total else 0.0
        if ratio >= self.policy.slowdown_ratio:
            span = max(1e-9, 1 - self.policy.slowdown_ratio)
            pause = self.policy.slowdown_pause * min(1.0, (ratio - self.policy.slowdown_ratio) / span)
            self.stats.throttled_seconds += pause
            self.sleep(pause)

    # -- API ---------------------------------------------------------------------------
    def describe(self, object_name: str) -> dict:
        return self.call(f"describe {object_name}", lambda sf: getattr(sf, object_name).describe())

    def count(self, soql: str) -> int:
        # query_all() rewrites totalSize to len(records), which is 0 for COUNT(): use query().
        return int(self.call("COUNT()", lambda sf: sf.query(soql, include_deleted=True))["totalSize"])

    def query_pages(self, soql: str, what: str, batch_size: int = 2000) -> Iterator[list[dict]]:
        """REST queryAll, one page at a time, following ``nextRecordsUrl``."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        page = self.call(what, lambda sf: sf.query(soql, include_deleted=True, headers=headers))
        while True:
            yield page["records"]
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return
            url = page["nextRecordsUrl"]
            page = self.call(what, lambda sf, u=url: sf.query_more(u, identifier_is_url=True, headers=headers))

    def bulk_pages(self, soql: str, what: str, max_records: int = 50_000, poll: float = 0.2,
                   timeout: float = 3600) -> Iterator[list[dict[str, str]]]:
        """Bulk API 2.0 ``queryAll`` job; yields pages of CSV rows (strings) by locator."""
        job = self.call(f"{what} (create bulk job)", lambda sf: self._bulk(sf, "POST", "jobs/query", json={
            "operation": "queryAll", "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA",
            "lineEnding": "LF"}).json())
        job_id = job["id"]
        deadline = time.monotonic() + timeout
        while True:
            info = self.call(f"{what} (poll bulk job)", lambda sf: self._bulk(sf, "GET", f"jobs/query/{job_id}").json())
            if info["state"] == "JobComplete":
                break
            if info["state"] in ("Failed", "Aborted"):
                raise SalesforceUnavailable(f"Salesforce {what}: bulk job {job_id} {info['state']}: "
                                            f"{info.get('errorMessage', 'no message')}")
            if time.monotonic() > deadline:
                raise SalesforceUnavailable(f"Salesforce {what}: bulk job {job_id} not complete after {timeout:.0f}s")
            self.sleep(poll)
            poll = min(poll * 2, 5.0)  # short jobs finish fast; long ones are polled less often
        locator: str | None = None
        while True:
            params: dict[str, Any] = {"maxRecords": max_records}
            if locator:
                params["locator"] = locator
            resp = self.call(f"{what} (bulk results)", lambda sf, p=params: self._bulk(
                sf, "GET", f"jobs/query/{job_id}/results", params=p, headers={"Accept": "text/csv"}))
            rows = list(csv.DictReader(io.StringIO(resp.text)))
            yield rows
            locator = resp.headers.get("Sforce-Locator")
            if not locator or locator == "null":
                return

    def _bulk(self, sf: Salesforce, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One Bulk API 2.0 call through simple-salesforce (so its error mapping applies)."""
        url = f"{sf.base_url}{path}"
        headers = {**sf.headers, **kwargs.pop("headers", {})}
        return sf._call_salesforce(method, url, name=path, headers=headers, **kwargs)


def _describe(exc: Exception | None) -> str:
    if exc is None:
        return "unknown"
    if isinstance(exc, SalesforceError):
        return f"HTTP {getattr(exc, 'status', '?')} {str(exc.content)[:200]}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
