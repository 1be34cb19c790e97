"""The Salesforce simulator's HTTPS server: the REST/SOAP subset simple-salesforce uses.

Endpoints (``{ver}`` is any ``NN.N``):

* ``POST /services/Soap/u/{ver}`` SOAP ``login`` (password + security token), real response/fault XML
* ``POST /services/oauth2/token`` ``client_credentials`` (and ``password``) grants
* ``GET /services/data/`` versions (no auth, as in Salesforce), ``/services/data/v{ver}/`` resources
* ``GET /services/data/v{ver}/query|queryAll?q=SOQL`` and ``.../query/{locator}-{offset}`` pages
* ``GET /services/data/v{ver}/sobjects/`` and ``.../sobjects/{Obj}/describe``
* ``GET /services/data/v{ver}/limits``
* Bulk API 2.0 query jobs under ``/services/data/v{ver}/jobs/query`` (see :mod:`tally_local.sfsim.bulk`)
* ``GET /health`` -> ``ok``
* ``GET|PUT /__admin/faults``, ``GET /__admin/counters``, ``POST /__admin/reset``: fault control
  for out-of-process tests, only with ``X-Sfsim-Admin-Token: <admin_token>`` (403 otherwise;
  disabled when the credentials have no ``admin_token``)

Everything under ``/services/data/v{ver}/`` needs ``Authorization: Bearer <session>`` and answers
with ``Sforce-Limit-Info: api-usage=USED/MAX``. Query results are snapshots taken when the query
runs (rows are serialised once and paged from memory), so a cursor never sees later writes.
Sessions, cursors, jobs and the API counters live in memory: a restart logs everybody out.

Failures are injected deterministically with :class:`tally_local.sfsim.faults.Faults` (constructor
``faults=``, :meth:`SalesforceSimulator.set_faults`, the admin API, or ``--faults`` on the CLI).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import string
import struct
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

from tally import sfid
from tally.catalog import Dataset, Field
from tally_local.sfsim import soql
from tally_local.sfsim.bulk import DELIMITERS, LINE_ENDINGS, BulkError, BulkJob, BulkJobs
from tally_local.sfsim.faults import Faults
from tally_local.sfsim.store import SalesforceStore

log = logging.getLogger("tally_local.sfsim")

DAILY_API_LIMIT = 15000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000
ORG_ID = "00D5j00000TaLLy"
USER_ID = "0055j00000TaLLy"
KEY_PREFIXES = {
    "User": "005",
    "Account": "001",
    "Opportunity": "006",
    "Contact": "003",
    "OpportunityHistory": "008",
    "DatedConversionRate": "04w",
    "Task": "00T",
}
API_VERSIONS = [
    ("Summer '23", "58.0"),
    ("Winter '24", "59.0"),
    ("Spring '24", "60.0"),
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
    ("Spring '25", "63.0"),
    ("Summer '25", "64.0"),
    ("Winter '26", "65.0"),
]
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."
REQUEST_LIMIT_EXCEEDED = "TotalRequests Limit exceeded."
ADMIN_HEADER = "X-Sfsim-Admin-Token"
_MAX_BODY = 1 << 20


# --- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What the simulator accepts: SOAP login (username, password+token) or OAuth client.

    ``admin_token`` authorises the ``/__admin`` fault-control API; empty (credential files
    written before it existed) disables that API.
    """

    username: str
    password: str = field(repr=False)
    security_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    admin_token: str = field(default="", repr=False)

    @classmethod
    def coerce(cls, value: Credentials | Mapping[str, str] | str | Path) -> Credentials:
        """A ``Credentials``, a mapping with its fields, or the path of a credentials JSON file."""
        if isinstance(value, Credentials):
            return value
        if isinstance(value, str | Path):
            return read_credentials(value)
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value or k != "admin_token"})


def _random(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def generate_credentials(username: str = "integration@tally.example") -> Credentials:
    """Fresh random secrets (alphanumeric, so they survive XML, URLs and env files unquoted)."""
    return Credentials(
        username=username,
        password=_random(20),
        security_token=_random(24),
        client_id="3MVG9" + _random(80),
        client_secret=_random(64, "0123456789ABCDEF"),
        admin_token=_random(32),
    )


def write_credentials(path: str | Path, credentials: Credentials | None = None, **fields: str) -> Credentials:
    """Write a credentials JSON file (mode 0600); random secrets unless given. Returns them."""
    creds = credentials or generate_credentials()
    if fields:
        creds = Credentials(**{**asdict(creds), **fields})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(creds), fh, indent=2)
    return creds


def read_credentials(path: str | Path) -> Credentials:
    return Credentials.coerce(json.loads(Path(path).read_text()))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


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
        super().__init__(address, _Handler)
        if ssl_context is not None:
            # Handshakes run in the request threads (see _Handler.setup), not in the accept loop.
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
        locator = "01g" + _random(15)
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


# --- request handling -------------------------------------------------------------------------

_VER = r"(?P<ver>\d+\.\d+)"
_API = rf"/services/data/v{_VER}"


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    handler: Callable[[_Handler, re.Match[str]], None]


def _routes() -> list[_Route]:
    h = _Handler
    table: list[tuple[str, tuple[str, ...], Callable[[_Handler, re.Match[str]], None]]] = [
        (r"/health", ("GET",), h.health),
        (rf"/services/Soap/u/{_VER}(?:/\w*)?", ("POST",), h.soap_login),
        (r"/services/oauth2/token", ("POST",), h.oauth_token),
        (r"/services/data", ("GET",), h.versions),
        (rf"{_API}", ("GET",), h.resources),
        (rf"{_API}/limits", ("GET",), h.limits),
        (rf"{_API}/sobjects", ("GET",), h.global_describe),
        (rf"{_API}/sobjects/(?P<obj>\w+)/describe", ("GET",), h.describe),
        (rf"{_API}/(?P<ep>query|queryAll)", ("GET",), h.query),
        (rf"{_API}/(?P<ep>query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)", ("GET",), h.query_more),
        (rf"{_API}/jobs/query", ("GET", "POST"), h.bulk_jobs),
        (rf"{_API}/jobs/query/(?P<job>\w+)", ("GET", "PATCH", "DELETE"), h.bulk_job),
        (rf"{_API}/jobs/query/(?P<job>\w+)/results", ("GET",), h.bulk_results),
        (r"/__admin/faults", ("GET", "PUT"), h.admin_faults),
        (r"/__admin/counters", ("GET",), h.admin_counters),
        (r"/__admin/reset", ("POST",), h.admin_reset),
    ]
    return [_Route(re.compile(p + "/?"), m, fn) for p, m, fn in table]


class _Handler(BaseHTTPRequestHandler):
    server: SalesforceSimulator
    protocol_version = "HTTP/1.1"
    server_version = "SalesforceSimulator/1.0"
    sys_version = ""
    timeout = 120

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without TCP_NODELAY, Nagle holds the second
        # until the client's delayed ACK (~40 ms per request).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        self._started = time.monotonic()
        url = urlsplit(self.path)
        self.url_path, self.params = url.path, parse_qs(url.query, keep_blank_values=True)
        self.is_api = False  # set once an API call is authorised: adds the usage header
        self.log_soql = ""  # SOQL to show in the log line
        self.call: int | None = None  # API call number, for the log line
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            self._error(413 if length.isdigit() else 400, "INVALID_REQUEST", "bad or too large request body")
            return
        self.body = self.rfile.read(int(length))
        try:
            if re.match(_API + "(/|$)", self.url_path) and not self._admit():
                return
            for route in ROUTES:
                match = route.pattern.fullmatch(self.url_path)
                if match:
                    if self.command not in route.methods:
                        allowed = ", ".join(route.methods)
                        msg = f"HTTP Method '{self.command}' not allowed. Allowed are {allowed}"
                        self._error(405, "METHOD_NOT_ALLOWED", msg)
                    else:
                        route.handler(self, match)
                    return
            self._error(404, "NOT_FOUND", "The requested resource does not exist")
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            log.exception("error handling %s %s", self.command, self.url_path)
            error_id = _random(10, string.digits)
            msg = f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}"
            self._error(500, "UNKNOWN_EXCEPTION", msg)

    def _bearer(self) -> str | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "oauth") else None

    def _admit(self) -> bool:
        """Count the API call and apply the faults; False if the call was answered (or dropped)."""
        verdict = self.server.admit(self._bearer())
        self.call, self.usage = verdict.call, verdict.usage
        if verdict.action == "reset":
            self._reset_connection()
            return False
        self.is_api = verdict.action != "unauthorised"  # 401s carry no usage header
        if verdict.action == "error_5xx":
            if verdict.status == 500:
                error_id = _random(10, string.digits)
                self._error(
                    500,
                    "UNKNOWN_EXCEPTION",
                    f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}",
                )
            else:
                msg = "Server temporarily unavailable. Please try again later."
                self._error(verdict.status, "SERVER_UNAVAILABLE", msg)
            return False
        if verdict.action == "unauthorised":
            self._error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            return False
        if verdict.action == "rate_limited":
            self._error(403, "REQUEST_LIMIT_EXCEEDED", REQUEST_LIMIT_EXCEEDED)
            return False
        return True

    def _reset_connection(self) -> None:
        """Drop the connection without a response: SO_LINGER 0 makes close() send a TCP RST."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._log("RESET", 0)  # before the client can see the reset, so its log line is there
        with contextlib.suppress(OSError):
            self.connection.close()

    # responses
    def _send(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json;charset=UTF-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        if status != 204:  # a 204 has neither body nor Content-Length
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        if self.is_api:
            self.send_header(
                "Sforce-Limit-Info", f"api-usage={self.usage}/{self.server.faults.api_daily_max}"
            )
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        # Logged before the body goes out: once a client has its response, the line is there
        # (a test reading the log right after a call raced the handler thread otherwise).
        self._log(status, len(data))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, [{"message": message, "errorCode": code}])

    def _log(self, status: int | str, size: int) -> None:
        """One line per request; never the query string (it may carry secrets) except SOQL."""
        extra = ""
        soql_text = self.log_soql
        if not soql_text and self.url_path.rstrip("/").endswith(("/query", "/queryAll")):
            soql_text = self.params.get("q", [""])[0]
        if soql_text:
            q = " ".join(soql_text.split())
            extra = f" q={q[:300]!r}"
        if getattr(self, "call", None) is not None and self.url_path.startswith("/services/data/v"):
            extra = f" call={self.call}" + extra
        ms = (time.monotonic() - self._started) * 1000
        log.info(
            '%s "%s %s" %s %dB %.1fms%s',
            self.client_address[0],
            self.command,
            self.url_path,
            status,
            size,
            ms,
            extra,
        )

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # logged by _log with timing

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), re.sub(r"\?\S*", "?...", format % args))

    def _base_url(self) -> str:
        """The URL the client used to reach us (Host header), so follow-up URLs match its cert."""
        host = self.headers.get("Host", "")
        if re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", host):
            return f"{self.server.scheme}://{host}"
        return self.server.base_url

    # auth endpoints
    def health(self, match: re.Match[str]) -> None:
        self._send(200, "ok", "text/plain;charset=UTF-8")

    def soap_login(self, match: re.Match[str]) -> None:
        ns = "{urn:partner.soap.sforce.com}"
        try:
            root = ElementTree.fromstring(self.body)
            username = root.findtext(f".//{ns}login/{ns}username")
            password = root.findtext(f".//{ns}login/{ns}password")
        except ElementTree.ParseError as exc:
            self._send(
                500, _soap_fault("soapenv:Client", f"Malformed SOAP request: {exc}"), "text/xml;charset=UTF-8"
            )
            return
        if username is None or password is None:
            self._send(
                500,
                _soap_fault("soapenv:Client", "Expected login(username, password)"),
                "text/xml;charset=UTF-8",
            )
            return
        creds = self.server.credentials
        if not (
            _same(username.lower(), creds.username.lower())
            and _same(password, creds.password + creds.security_token)
        ):
            fault = _soap_fault(
                "sf:INVALID_LOGIN", f"INVALID_LOGIN: {INVALID_LOGIN}", "INVALID_LOGIN", INVALID_LOGIN
            )
            self._send(500, fault, "text/xml;charset=UTF-8")
            return
        self._send(
            200,
            _soap_login_response(
                self._base_url(),
                match["ver"],
                self.server.new_session(),
                creds.username,
                self.server.session_ttl,
            ),
            "text/xml;charset=UTF-8",
        )

    def oauth_token(self, match: re.Match[str]) -> None:
        form = {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        creds = self.server.credentials
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password"):
            self._send(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
            return
        if not (_same(client_id, creds.client_id) and _same(client_secret, creds.client_secret)):
            self._send(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
            return
        if grant == "password" and not (
            _same(form.get("username", "").lower(), creds.username.lower())
            and any(
                _same(form.get("password", ""), p)
                for p in (creds.password, creds.password + creds.security_token)
            )
        ):
            self._send(400, {"error": "invalid_grant", "error_description": "authentication failure"})
            return
        base, token = self._base_url(), self.server.new_session()
        issued_at = str(int(time.time() * 1000))
        signature = hmac.new(creds.client_secret.encode(), (base + issued_at).encode(), "sha256").digest()
        self._send(
            200,
            {
                "access_token": token,
                "signature": base64.b64encode(signature).decode(),
                "scope": "api",
                "instance_url": base,
                "id": f"{base}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": issued_at,
            },
        )

    # data endpoints
    def versions(self, match: re.Match[str]) -> None:
        self._send(
            200, [{"label": lbl, "url": f"/services/data/v{v}", "version": v} for lbl, v in API_VERSIONS]
        )

    def resources(self, match: re.Match[str]) -> None:
        base = f"/services/data/v{match['ver']}"
        names = ("limits", "query", "queryAll", "sobjects")
        doc = {name: f"{base}/{name}" for name in names}
        doc["jobs"] = {"ingest": f"{base}/jobs/ingest", "query": f"{base}/jobs/query"}
        self._send(200, doc)

    def limits(self, match: re.Match[str]) -> None:
        daily_max = self.server.faults.api_daily_max
        remaining = max(0, daily_max - self.usage)
        self._send(
            200,
            {
                "DailyApiRequests": {"Max": daily_max, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            },
        )

    def global_describe(self, match: re.Match[str]) -> None:
        objects = [_describe(ds, match["ver"], with_fields=False) for ds in self.server.catalog.values()]
        self._send(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    def describe(self, match: re.Match[str]) -> None:
        ds = next((d for n, d in self.server.catalog.items() if n.lower() == match["obj"].lower()), None)
        if ds is None:
            self._error(404, "NOT_FOUND", "The requested resource does not exist")
            return
        self._send(200, _describe(ds, match["ver"], with_fields=True))

    def query(self, match: re.Match[str]) -> None:
        endpoint, ver = match["ep"], match["ver"]
        text = self.params.get("q", [""])[0]
        try:
            parsed = soql.parse(text, self.server.catalog)
        except soql.SoqlError as exc:
            self._error(400, exc.error_code, exc.message)
            return
        include_deleted = endpoint == "queryAll"
        store = self.server.store
        if parsed.is_count:
            total = store.count_query(parsed, include_deleted=include_deleted)
            self._send(200, {"totalSize": total, "done": True, "records": []})
            return
        name = parsed.object_name
        records = [
            json.dumps(
                {"attributes": {"type": name, "url": f"/services/data/v{ver}/sobjects/{name}/{key}"}, **rec}
            )
            for key, rec in store.query(parsed, include_deleted=include_deleted)
        ]
        page_size = self._page_size()
        locator = self.server.open_cursor(records, page_size, endpoint) if len(records) > page_size else ""
        self._send_page(records, 0, page_size, locator, ver, endpoint)

    def query_more(self, match: re.Match[str]) -> None:
        cursor = self.server.get_cursor(match["locator"])
        offset = int(match["offset"])
        if cursor is None or offset > len(cursor.records):
            self._error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return
        self._send_page(
            cursor.records, offset, cursor.page_size, match["locator"], match["ver"], cursor.endpoint
        )

    def _page_size(self) -> int:
        """The server's page size, lowered by ``Sforce-Query-Options: batchSize=N`` (200..2000)."""
        m = re.search(r"batchSize\s*=\s*(\d+)", self.headers.get("Sforce-Query-Options", ""))
        if not m:
            return self.server.page_size
        return min(self.server.page_size, max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, int(m.group(1)))))

    def _send_page(
        self, records: list[str], offset: int, size: int, locator: str, ver: str, endpoint: str
    ) -> None:
        end = offset + size
        head: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
        if not head["done"]:
            head["nextRecordsUrl"] = f"/services/data/v{ver}/{endpoint}/{locator}-{end}"
        body = json.dumps(head)[:-1] + ', "records": [' + ", ".join(records[offset:end]) + "]}"
        self._send(200, body)

    # Bulk API 2.0 query jobs (see tally_local.sfsim.bulk)
    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise BulkError(
                400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}"
            ) from None

    def _bulk(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BulkError as exc:
            self._error(exc.status, exc.error_code, exc.message)

    def bulk_jobs(self, match: re.Match[str]) -> None:
        if self.command == "GET":
            records = [job.info(detail=False) for job in self.server.bulk_jobs.all()]
            self._send(200, {"done": True, "records": records, "nextRecordsUrl": None})
        else:
            self._bulk(lambda: self._bulk_create(match["ver"]))

    def _bulk_create(self, ver: str) -> None:
        body = self._json_body()
        if not isinstance(body, dict):
            raise BulkError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation, text = body.get("operation"), body.get("query")
        self.log_soql = text if isinstance(text, str) else ""
        if operation not in ("query", "queryAll"):
            raise BulkError(400, "API_ERROR", f"Invalid operation for a query job: {operation!r}")
        if body.get("contentType", "CSV") != "CSV":
            raise BulkError(400, "API_ERROR", "contentType must be CSV")
        delimiter, line_ending = body.get("columnDelimiter", "COMMA"), body.get("lineEnding", "LF")
        if delimiter not in DELIMITERS:
            raise BulkError(400, "API_ERROR", f"Invalid columnDelimiter: {delimiter!r}")
        if line_ending not in LINE_ENDINGS:
            raise BulkError(400, "API_ERROR", f"Invalid lineEnding: {line_ending!r}")
        if not isinstance(text, str):
            raise BulkError(400, "API_ERROR", "query is required for query jobs")
        parsed = self._bulk_parse(text)
        faults = self.server.faults
        job = self.server.bulk_jobs.create(
            operation=operation,
            object=parsed.object_name,
            query=text,
            api_version=ver,
            column_delimiter=delimiter,
            line_ending=line_ending,
            created_by=USER_ID + sfid.suffix(USER_ID),
            polls_until_complete=faults.bulk_polls_until_complete,
            failure=faults.bulk_job_failure,
        )
        self._send(200, job.info(detail=False))

    def _bulk_parse(self, text: str) -> soql.SoqlQuery:
        try:
            parsed = soql.parse(text, self.server.catalog)
        except soql.SoqlError as exc:
            raise BulkError(400, "API_ERROR", exc.message) from None
        if parsed.is_count:
            raise BulkError(400, "API_ERROR", "Aggregate queries are not supported by Bulk API 2.0: COUNT()")
        return parsed

    def _bulk_run(self, job: BulkJob) -> tuple[tuple[Field, ...], list[list[object]]]:
        parsed = self._bulk_parse(job.query)  # against the org as it is now (drift may fail it)
        fields = tuple(f for name in parsed.fields for f in parsed.dataset.fields if f.name == name)
        rows = self.server.store.query(parsed, include_deleted=job.operation == "queryAll")
        return fields, [[rec[f.name] for f in fields] for _, rec in rows]

    def bulk_job(self, match: re.Match[str]) -> None:
        jobs, job_id = self.server.bulk_jobs, match["job"]

        def act() -> None:
            if self.command == "GET":
                self._send(200, jobs.poll(job_id, self._bulk_run).info())
            elif self.command == "DELETE":
                jobs.delete(job_id)
                self._send(204, b"")
            else:
                body = self._json_body()
                state = body.get("state") if isinstance(body, dict) else None
                if state != "Aborted":
                    jobs.get(job_id)  # 404 first, as Salesforce
                    raise BulkError(
                        400, "API_ERROR", f"A query job can only be set to Aborted, not {state!r}"
                    )
                self._send(200, jobs.abort(job_id).info(detail=False))

        self._bulk(act)

    def bulk_results(self, match: re.Match[str]) -> None:
        def act() -> None:
            locator = self.params.get("locator", [None])[0]
            max_records = self.params.get("maxRecords", [None])[0]
            text, count, next_locator = self.server.bulk_jobs.page(match["job"], locator, max_records)
            headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(count)}
            self._send(200, text, "text/csv", headers)

        self._bulk(act)

    # fault control for out-of-process tests
    def _admin_authorised(self) -> bool:
        expected = self.server.credentials.admin_token
        given = self.headers.get(ADMIN_HEADER, "")
        if not expected:
            self._send(403, {"error": "admin API disabled: the credentials have no admin_token"})
            return False
        if not given or not _same(given, expected):
            self._send(403, {"error": f"missing or wrong {ADMIN_HEADER} header"})
            return False
        return True

    def admin_faults(self, match: re.Match[str]) -> None:
        if not self._admin_authorised():
            return
        if self.command == "PUT":
            try:
                self.server.set_faults(Faults.from_json(self.body.decode(errors="replace") or "{}"))
            except (ValueError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
                return
            log.info("faults set: %s", json.dumps(self.server.faults.to_dict(), separators=(",", ":")))
        self._send(200, self.server.faults.to_dict())

    def admin_counters(self, match: re.Match[str]) -> None:
        if self._admin_authorised():
            self._send(200, self.server.counters())

    def admin_reset(self, match: re.Match[str]) -> None:
        if self._admin_authorised():
            self.server.reset_counters()
            self._send(200, self.server.counters())


ROUTES = _routes()


# --- SOAP and describe documents --------------------------------------------------------------


def _soap_fault(
    faultcode: str, faultstring: str, exception_code: str | None = None, message: str = ""
) -> str:
    detail = ""
    if exception_code:
        detail = (
            '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
            f"<sf:exceptionCode>{exception_code}</sf:exceptionCode>"
            f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
            "</sf:LoginFault></detail>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>{faultcode}</faultcode>"
        f"<faultstring>{escape(faultstring)}</faultstring>{detail}</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def _soap_login_response(base_url: str, ver: str, session_id: str, username: str, ttl: float) -> str:
    base = escape(base_url)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{base}/services/Soap/m/{ver}/{ORG_ID}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{ver}/{ORG_ID}</serverUrl>"
        f"<sessionId>{escape(session_id)}</sessionId><userId>{USER_ID}</userId>"
        f"<userInfo><currencySymbol>$</currencySymbol><organizationId>{ORG_ID}</organizationId>"
        "<organizationMultiCurrency>false</organizationMultiCurrency><organizationName>Tally</organizationName>"
        f"<sessionSecondsValid>{int(ttl)}</sessionSecondsValid><userEmail>{escape(username)}</userEmail>"
        f"<userFullName>Tally Integration</userFullName><userId>{USER_ID}</userId>"
        f"<userName>{escape(username)}</userName><userTimeZone>Etc/UTC</userTimeZone>"
        "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


_SYSTEM_FIELDS = {"Id", "IsDeleted", "CreatedDate", "SystemModstamp"}
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "string": "xsd:string",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "double": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
_PRECISION = {"currency": (18, 2), "percent": (3, 0), "double": (18, 0)}


def describe_type(f: Field) -> str:
    """The describe ``type`` of a catalog field."""
    if f.type == "id":
        return "id" if f.name == "Id" else "reference"
    if f.name == "Probability" and f.type == "double":
        return "percent"
    return {"bool": "boolean", "decimal": "currency"}.get(f.type, f.type)


def _label(name: str) -> str:
    """``SystemModstamp`` -> ``System Modstamp``, ``OwnerId`` -> ``Owner ID``, ``Region__c`` -> ``Region``."""
    label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.removesuffix("__c"))
    return label[:-2] + "ID" if label.endswith(" Id") or label == "Id" else label


def _describe_field(ds: Dataset, f: Field) -> dict[str, Any]:
    kind = describe_type(f)
    length = {"id": 18, "reference": 18, "string": 255}.get(kind, 0)
    precision, scale = _PRECISION.get(kind, (0, 0))
    target = ("User" if f.name == "OwnerId" else f.name.removesuffix("Id")) if kind == "reference" else None
    system = f.name in _SYSTEM_FIELDS
    return {
        "name": f.name,
        "label": _label(f.name),
        "type": kind,
        "soapType": _SOAP_TYPES[kind],
        "nillable": f.nullable,
        "length": length,
        "byteLength": length * 3,
        "precision": precision,
        "scale": scale,
        "digits": 9 if kind == "int" else 0,
        "custom": f.name.endswith("__c"),
        "calculated": False,
        "createable": not system,
        "updateable": not system,
        "defaultedOnCreate": system or kind == "boolean",
        "filterable": True,
        "sortable": True,
        "idLookup": f.name == ds.key,
        "unique": False,
        "externalId": False,
        "referenceTo": [target] if target else [],
        "relationshipName": f.name.removesuffix("Id") if target else None,
        "picklistValues": [],
    }


def _describe(ds: Dataset, ver: str, *, with_fields: bool) -> dict[str, Any]:
    base = f"/services/data/v{ver}/sobjects/{ds.name}"
    label = _label(ds.name)
    doc: dict[str, Any] = {
        "name": ds.name,
        "label": label,
        "labelPlural": label[:-1] + "ies" if label.endswith("y") else label + "s",
        "keyPrefix": KEY_PREFIXES.get(ds.name),
        "custom": ds.name.endswith("__c"),
        "queryable": True,
        "retrieveable": True,
        "searchable": True,
        "createable": True,
        "updateable": True,
        "deletable": True,
        "undeletable": ds.deleted_flag is not None,
        "replicateable": True,
        "layoutable": True,
        "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
    }
    if with_fields:
        doc.update(
            childRelationships=[], recordTypeInfos=[], fields=[_describe_field(ds, f) for f in ds.fields]
        )
    return doc


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
