"""The Salesforce simulator's HTTPS server: its state, construction and start/stop.

:class:`SalesforceSimulator` holds the store, the sessions, the query cursors, the Bulk API 2.0
jobs and the API-call counters; requests are answered by
:class:`tally_local.sfsim.handler.Handler`, whose route table sends them to
:mod:`tally_local.sfsim.auth` (SOAP/OAuth login), :mod:`tally_local.sfsim.rest` (versions,
limits, describe, query/queryAll), :mod:`tally_local.sfsim.bulk_routes` (Bulk API 2.0 query
jobs) and :mod:`tally_local.sfsim.admin` (the ``/__admin`` fault-control API).
:func:`start_in_thread` serves HTTPS from a daemon thread (tests); ``python -m tally_local.sfsim``
serves it for the stack.

Sessions, cursors, jobs and the API counters live in memory: a restart logs everybody out.
Failures are injected deterministically with :class:`tally_local.sfsim.faults.Faults` (constructor
``faults=``, :meth:`SalesforceSimulator.set_faults`, the admin API, or ``--faults`` on the CLI).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tally.catalog import Dataset
from tally_local.sfsim.auth import ORG_ID, Credentials, random_string
from tally_local.sfsim.bulk import BulkJobs
from tally_local.sfsim.faults import Faults
from tally_local.sfsim.handler import Handler
from tally_local.sfsim.rest import MAX_BATCH_SIZE
from tally_local.sfsim.store import SalesforceStore

log = logging.getLogger("tally_local.sfsim")


# --- server -----------------------------------------------------------------------------------


@dataclass
class _Cursor:
    records: list[str]  # one JSON object per record
    page_size: int
    endpoint: str  # query | queryAll
    expires: float = 0.0


@dataclass(frozen=True)
class Admission:
    """What happens to one API call: ``ok``, ``reset``, ``error_5xx``, ``unauthorised`` or ``rate_limited``."""

    action: str
    call: int  # the call's number since the counters were reset
    usage: int  # API usage to report (including this call when admitted)
    status: int = 200


def _in_window(call: int, after: int | None, count: int) -> bool:
    return after is not None and after < call <= after + count


class SalesforceSimulator(ThreadingHTTPServer):
    """A threading HTTP(S) server holding the store, sessions, query cursors and API usage."""

    daemon_threads = True
    max_open_cursors = 10  # like Salesforce: opening an 11th releases the oldest
    cursor_ttl = 15 * 60.0

    def __init__(
        self,
        address: tuple[str, int],
        store: SalesforceStore,
        credentials: Credentials,
        *,
        ssl_context: ssl.SSLContext | None,
        page_size: int = MAX_BATCH_SIZE,
        session_ttl: float = 2 * 3600.0,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(address, Handler)
        if ssl_context is not None:
            # Handshakes run in the request threads (see Handler.setup), not in the accept loop.
            self.socket = ssl_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )
        self.scheme = "https" if ssl_context else "http"
        self.store = store
        self.credentials = credentials
        self._page_size = page_size
        self.session_ttl = session_ttl
        self.certfile: str | None = None
        self._tempdir: str | None = None
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self.bulk_jobs = BulkJobs()
        self._call_count = 0  # API calls seen (fault windows count these)
        self._api_calls = 0  # API calls admitted (usage)
        self._expiry_fired = False
        self._faults = Faults()
        self._catalog: dict[str, Dataset] = dict(store.catalog)
        self.set_faults(faults or Faults())

    # faults
    @property
    def faults(self) -> Faults:
        return self._faults

    @property
    def catalog(self) -> dict[str, Dataset]:
        """The org's objects as clients see them: the store's catalog with describe drift applied."""
        return self._catalog

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults and reset the counters (windows count from now). Thread-safe."""
        if not isinstance(faults, Faults):
            raise TypeError(f"expected Faults, got {type(faults).__name__}")
        catalog = faults.drifted(self.store.catalog)  # validates the drift before changing anything
        with self._lock:
            self._faults, self._catalog = faults, catalog
            self._reset_counters_locked()

    def reset_counters(self) -> None:
        """Restart call numbering and API usage (from ``faults.api_usage``); re-arm session expiry."""
        with self._lock:
            self._reset_counters_locked()

    def _reset_counters_locked(self) -> None:
        self._call_count = self._api_calls = 0
        self._expiry_fired = False

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "api_calls_seen": self._call_count,
                "api_calls_admitted": self._api_calls,
                "api_usage": self._faults.api_usage + self._api_calls,
                "api_daily_max": self._faults.api_daily_max,
            }

    def admit(self, token: str | None) -> Admission:
        """Number an API call and decide its fate (see :mod:`tally_local.sfsim.faults` for the order)."""
        now = time.monotonic()
        with self._lock:
            f = self._faults
            self._call_count += 1
            call = self._call_count
            usage = f.api_usage + self._api_calls
            if _in_window(call, f.reset_after, f.reset_count):
                return Admission("reset", call, usage, 0)
            if _in_window(call, f.errors_5xx_after, f.errors_5xx_count):
                return Admission("error_5xx", call, usage, f.errors_5xx_status)
            if (
                f.expire_session_after is not None
                and call > f.expire_session_after
                and not self._expiry_fired
            ):
                self._expiry_fired = True
                self._sessions.clear()
            if not (token and self._check_session_locked(token, now)):
                return Admission("unauthorised", call, usage, 401)
            if _in_window(call, f.rate_limit_after, f.rate_limit_calls):
                return Admission("rate_limited", call, usage, 403)
            self._api_calls += 1
            return Admission("ok", call, usage + 1)

    @property
    def page_size(self) -> int:
        """REST query page size: ``faults.page_size`` when set, else the configured one."""
        return self._faults.page_size or self._page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self._page_size = value

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"{self.scheme}://{host}:{port}"

    # sessions
    def new_session(self) -> str:
        token = f"{ORG_ID}!AQ{secrets.token_urlsafe(72)}"
        with self._lock:
            self._sessions[token] = time.monotonic() + self.session_ttl
        return token

    def check_session(self, token: str) -> bool:
        """True if the session exists and is live; each use extends it (sliding timeout)."""
        with self._lock:
            return self._check_session_locked(token, time.monotonic())

    def _check_session_locked(self, token: str, now: float) -> bool:
        expires = self._sessions.get(token)
        if expires is None or expires < now:
            self._sessions.pop(token, None)
            return False
        self._sessions[token] = now + self.session_ttl
        return True

    def expire_sessions(self) -> None:
        """Invalidate every session (tests use this to exercise re-login)."""
        with self._lock:
            self._sessions.clear()

    # API usage
    @property
    def api_calls(self) -> int:
        """API calls admitted since the counters were reset."""
        return self._api_calls

    @property
    def api_usage(self) -> int:
        """What ``Sforce-Limit-Info`` reports as used: ``faults.api_usage`` + admitted calls."""
        return self._faults.api_usage + self._api_calls

    # query cursors
    def open_cursor(self, records: list[str], page_size: int, endpoint: str) -> str:
        locator = "01g" + random_string(15)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, c in self._cursors.items() if c.expires < now]:
                del self._cursors[key]
            while len(self._cursors) >= self.max_open_cursors:
                self._cursors.popitem(last=False)
            self._cursors[locator] = _Cursor(records, page_size, endpoint, now + self.cursor_ttl)
        return locator

    def get_cursor(self, locator: str) -> _Cursor | None:
        now = time.monotonic()
        with self._lock:
            cursor = self._cursors.get(locator)
            if cursor is None or cursor.expires < now:
                self._cursors.pop(locator, None)
                return None
            cursor.expires = now + self.cursor_ttl
            self._cursors.move_to_end(locator)
            return cursor

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            log.info("%s connection error: %s", client_address[0], exc)
        else:
            log.exception("%s unhandled error", client_address[0])

    def stop(self) -> None:
        """Stop serving, close the socket, remove a generated temporary certificate."""
        self.shutdown()
        self.server_close()
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)


# --- construction -----------------------------------------------------------------------------


def make_server(
    store_path: str | Path,
    credentials: Credentials | Mapping[str, str] | str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int = MAX_BATCH_SIZE,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    session_ttl: float = 2 * 3600.0,
    faults: Faults | None = None,
) -> SalesforceSimulator:
    """A bound (not yet serving) simulator; HTTPS when ``certfile`` is given, else plain HTTP."""
    if page_size < 1:
        raise ValueError("page_size must be positive")
    context = None
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)
    server = SalesforceSimulator(
        (host, port),
        SalesforceStore(store_path),
        Credentials.coerce(credentials),
        ssl_context=context,
        page_size=page_size,
        session_ttl=session_ttl,
        faults=faults,
    )
    server.certfile = str(certfile) if certfile else None
    return server


def start_in_thread(
    store_path: str | Path,
    credentials: Credentials | Mapping[str, str] | str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    **options: Any,
) -> tuple[SalesforceSimulator, str]:
    """Serve HTTPS from a daemon thread; return ``(server, base_url)``. Stop with ``server.stop()``.

    ``options`` are :func:`make_server`'s (``page_size``, ``session_ttl``, ``faults``). Without
    ``certfile`` a temporary certificate is generated; ``server.certfile`` is the path to pass as
    ``requests``' ``verify=``.
    """
    tempdir = None
    if certfile is None:
        from tally_local.sfsim.tls import generate_certificate

        tempdir = tempfile.mkdtemp(prefix="sfsim-tls-")
        certfile, keyfile = Path(tempdir, "cert.pem"), Path(tempdir, "key.pem")
        hosts = dict.fromkeys(h for h in (host, "127.0.0.1", "localhost") if h not in ("0.0.0.0", "::", ""))
        generate_certificate(certfile, keyfile, tuple(hosts))
    server = make_server(store_path, credentials, host, port, certfile=certfile, keyfile=keyfile, **options)
    server._tempdir = tempdir
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sfsim", daemon=True
    )
    thread.start()
    return server, server.base_url
