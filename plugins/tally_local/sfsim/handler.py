"""The simulator's request handler: the route table, API-call admission, responses and logging.

Routes (``{ver}`` is any ``NN.N``) and the modules that answer them:

* ``POST /services/Soap/u/{ver}``, ``POST /services/oauth2/token``: :mod:`tally_local.sfsim.auth`
* ``GET /services/data/`` versions, ``/services/data/v{ver}/`` resources, ``.../limits``,
  ``.../query|queryAll`` (and their pages), ``.../sobjects/`` and ``.../sobjects/{Obj}/describe``:
  :mod:`tally_local.sfsim.rest`
* Bulk API 2.0 query jobs under ``/services/data/v{ver}/jobs/query``: :mod:`tally_local.sfsim.bulk_routes`
* ``/__admin/faults``, ``/__admin/counters``, ``/__admin/reset``: :mod:`tally_local.sfsim.admin`
* ``GET /health`` -> ``ok`` (here)

Every request under ``/services/data/v{ver}/`` is an API call: it needs ``Authorization: Bearer
<session>``, goes through :meth:`tally_local.sfsim.server.SalesforceSimulator.admit` (which
applies the faults) before routing, and its responses carry ``Sforce-Limit-Info:
api-usage=USED/MAX``. One log line per request, never with a query string other than SOQL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import string
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tally_local.sfsim import admin, auth, bulk_routes, rest
from tally_local.sfsim.auth import random_string

if TYPE_CHECKING:
    from tally_local.sfsim.server import SalesforceSimulator

log = logging.getLogger("tally_local.sfsim")

REQUEST_LIMIT_EXCEEDED = "TotalRequests Limit exceeded."
_MAX_BODY = 1 << 20
_VER = r"(?P<ver>\d+\.\d+)"
_API = rf"/services/data/v{_VER}"


class Handler(BaseHTTPRequestHandler):
    """One connection's requests; the endpoints are functions ``(handler, match)`` in :data:`ROUTES`."""

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
            self.reply_error(
                413 if length.isdigit() else 400, "INVALID_REQUEST", "bad or too large request body"
            )
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
                        self.reply_error(405, "METHOD_NOT_ALLOWED", msg)
                    else:
                        route.handler(self, match)
                    return
            self.reply_error(404, "NOT_FOUND", "The requested resource does not exist")
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            log.exception("error handling %s %s", self.command, self.url_path)
            error_id = random_string(10, string.digits)
            msg = f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}"
            self.reply_error(500, "UNKNOWN_EXCEPTION", msg)

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
                error_id = random_string(10, string.digits)
                self.reply_error(
                    500,
                    "UNKNOWN_EXCEPTION",
                    f"An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}",
                )
            else:
                msg = "Server temporarily unavailable. Please try again later."
                self.reply_error(verdict.status, "SERVER_UNAVAILABLE", msg)
            return False
        if verdict.action == "unauthorised":
            self.reply_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            return False
        if verdict.action == "rate_limited":
            self.reply_error(403, "REQUEST_LIMIT_EXCEEDED", REQUEST_LIMIT_EXCEEDED)
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
    def reply(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json;charset=UTF-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a response: ``body`` as is when ``str``/``bytes``, else as JSON."""
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

    def reply_error(self, status: int, code: str, message: str) -> None:
        """Send Salesforce's REST error body ``[{"message": ..., "errorCode": ...}]``."""
        self.reply(status, [{"message": message, "errorCode": code}])

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

    def client_base_url(self) -> str:
        """The URL the client used to reach us (Host header), so follow-up URLs match its cert."""
        host = self.headers.get("Host", "")
        if re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?|\[[0-9A-Fa-f:.]+\](:\d+)?", host):
            return f"{self.server.scheme}://{host}"
        return self.server.base_url


def health(h: Handler, match: re.Match[str]) -> None:
    h.reply(200, "ok", "text/plain;charset=UTF-8")


# --- routes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: tuple[str, ...]
    handler: Callable[[Handler, re.Match[str]], None]


def _routes() -> list[Route]:
    table: list[tuple[str, tuple[str, ...], Callable[[Handler, re.Match[str]], None]]] = [
        (r"/health", ("GET",), health),
        (rf"/services/Soap/u/{_VER}(?:/\w*)?", ("POST",), auth.soap_login),
        (r"/services/oauth2/token", ("POST",), auth.oauth_token),
        (r"/services/data", ("GET",), rest.versions),
        (rf"{_API}", ("GET",), rest.resources),
        (rf"{_API}/limits", ("GET",), rest.limits),
        (rf"{_API}/sobjects", ("GET",), rest.global_describe),
        (rf"{_API}/sobjects/(?P<obj>\w+)/describe", ("GET",), rest.describe),
        (rf"{_API}/(?P<ep>query|queryAll)", ("GET",), rest.query),
        (rf"{_API}/(?P<ep>query|queryAll)/(?P<locator>01g\w+)-(?P<offset>\d+)", ("GET",), rest.query_more),
        (rf"{_API}/jobs/query", ("GET", "POST"), bulk_routes.bulk_jobs),
        (rf"{_API}/jobs/query/(?P<job>\w+)", ("GET", "PATCH", "DELETE"), bulk_routes.bulk_job),
        (rf"{_API}/jobs/query/(?P<job>\w+)/results", ("GET",), bulk_routes.bulk_results),
        (r"/__admin/faults", ("GET", "PUT"), admin.admin_faults),
        (r"/__admin/counters", ("GET",), admin.admin_counters),
        (r"/__admin/reset", ("POST",), admin.admin_reset),
    ]
    return [Route(re.compile(p + "/?"), m, fn) for p, m, fn in table]


ROUTES = _routes()
