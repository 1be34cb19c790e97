"""The Salesforce simulator's HTTPS server: the REST/SOAP subset simple-salesforce uses.

Endpoints (``{ver}`` is any ``NN.N``):

* ``POST /services/Soap/u/{ver}`` SOAP ``login`` (password + security token), real response/fault XML
* ``POST /services/oauth2/token`` ``client_credentials`` (and ``password``) grants
* ``GET /services/data/`` versions (no auth, as in Salesforce), ``/services/data/v{ver}/`` resources
* ``GET /services/data/v{ver}/query|queryAll?q=SOQL`` and ``.../query/{locator}-{offset}`` pages
* ``GET /services/data/v{ver}/sobjects/`` and ``.../sobjects/{Obj}/describe``
* ``GET /services/data/v{ver}/limits``
* ``GET /health`` -> ``ok``

Everything under ``/services/data/v{ver}/`` needs ``Authorization: Bearer <session>`` and answers
with ``Sforce-Limit-Info: api-usage=N/15000``. Query results are snapshots taken when the query
runs (rows are serialised once and paged from memory), so a cursor never sees later writes.
Sessions, cursors and the API counter live in memory: a restart logs everybody out.
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
import ssl
import string
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

from tally.catalog import Dataset, Field
from tally.sfsim import soql
from tally.sfsim.store import SalesforceStore

log = logging.getLogger("tally.sfsim")

DAILY_API_LIMIT = 15000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000
ORG_ID = "00D5j00000TaLLy"
USER_ID = "0055j00000TaLLy"
KEY_PREFIXES = {"User": "005", "Account": "001", "Opportunity": "006"}
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
_MAX_BODY = 1 << 20


# --- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """What the simulator accepts: SOAP login (username, password+token) or OAuth client."""

    username: str
    password: str = field(repr=False)
    security_token: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def coerce(cls, value: Credentials | Mapping[str, str] | str | Path) -> Credentials:
        """A ``Credentials``, a mapping with its fields, or the path of a credentials JSON file."""
        if isinstance(value, Credentials):
            return value
        if isinstance(value, str | Path):
            return read_credentials(value)
        return cls(**{k: value[k] for k in cls.__dataclass_fields__})


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
        self.page_size = page_size
        self.session_ttl = session_ttl
        self.certfile: str | None = None
        self._tempdir: str | None = None
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._api_calls = 0

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
        now = time.monotonic()
        with self._lock:
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
    def count_api_call(self) -> int:
        with self._lock:
            self._api_calls += 1
            return self._api_calls

    @property
    def api_calls(self) -> int:
        return self._api_calls

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
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > _MAX_BODY:
            self.close_connection = True
            self._error(413 if length.isdigit() else 400, "INVALID_REQUEST", "bad or too large request body")
            return
        self.body = self.rfile.read(int(length))
        try:
            if re.match(_API + "(/|$)", self.url_path):
                if not self._authorised():
                    self._error(401, "INVALID_SESSION_ID", "Session expired or invalid")
                    return
                self.is_api, self.usage = True, self.server.count_api_call()
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

    def _authorised(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() in ("bearer", "oauth") and self.server.check_session(token.strip())

    # responses
    def _send(self, status: int, body: Any, content_type: str = "application/json;charset=UTF-8") -> None:
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.is_api:
            self.send_header("Sforce-Limit-Info", f"api-usage={self.usage}/{DAILY_API_LIMIT}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._log(status, len(data))

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, [{"message": message, "errorCode": code}])

    def _log(self, status: int, size: int) -> None:
        """One line per request; never the query string (it may carry secrets) except SOQL."""
        extra = ""
        if self.url_path.rstrip("/").endswith(("/query", "/queryAll")):
            q = " ".join(self.params.get("q", [""])[0].split())
            extra = f" q={q[:300]!r}"
        ms = (time.monotonic() - self._started) * 1000
        log.info(
            '%s "%s %s" %d %dB %.1fms%s',
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
        self._send(200, {name: f"{base}/{name}" for name in names})

    def limits(self, match: re.Match[str]) -> None:
        remaining = max(0, DAILY_API_LIMIT - self.server.api_calls)
        self._send(
            200,
            {
                "DailyApiRequests": {"Max": DAILY_API_LIMIT, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            },
        )

    def global_describe(self, match: re.Match[str]) -> None:
        objects = [
            _describe(ds, match["ver"], with_fields=False) for ds in self.server.store.catalog.values()
        ]
        self._send(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects})

    def describe(self, match: re.Match[str]) -> None:
        ds = next(
            (d for n, d in self.server.store.catalog.items() if n.lower() == match["obj"].lower()), None
        )
        if ds is None:
            self._error(404, "NOT_FOUND", "The requested resource does not exist")
            return
        self._send(200, _describe(ds, match["ver"], with_fields=True))

    def query(self, match: re.Match[str]) -> None:
        endpoint, ver = match["ep"], match["ver"]
        text = self.params.get("q", [""])[0]
        try:
            parsed = soql.parse(text, self.server.store.catalog)
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
    if f.name == "Probability":
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
    )
    server.certfile = str(certfile) if certfile else None
    return server


def start_in_thread(
    store_path: str | Path,
    credentials: Credentials | Mapping[str, str] | str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    page_size: int = MAX_BATCH_SIZE,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    session_ttl: float = 2 * 3600.0,
) -> tuple[SalesforceSimulator, str]:
    """Serve HTTPS from a daemon thread; return ``(server, base_url)``. Stop with ``server.stop()``.

    Without ``certfile`` a temporary certificate is generated; ``server.certfile`` is the path to
    pass as ``requests``' ``verify=``.
    """
    tempdir = None
    if certfile is None:
        from tally.sfsim.tls import generate_certificate

        tempdir = tempfile.mkdtemp(prefix="sfsim-tls-")
        certfile, keyfile = Path(tempdir, "cert.pem"), Path(tempdir, "key.pem")
        hosts = dict.fromkeys(h for h in (host, "127.0.0.1", "localhost") if h not in ("0.0.0.0", "::", ""))
        generate_certificate(certfile, keyfile, tuple(hosts))
    server = make_server(store_path, credentials, host, port, page_size, certfile, keyfile, session_ttl)
    server._tempdir = tempdir
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sfsim", daemon=True
    )
    thread.start()
    return server, server.base_url
