"""The simulator's credentials and login endpoints: SOAP ``login`` and the OAuth token grants.

* ``POST /services/Soap/u/{ver}`` SOAP ``login`` (username, password + security token), with
  Salesforce's response and fault XML
* ``POST /services/oauth2/token`` ``client_credentials`` (and ``password``) grants; the client
  may authenticate in the form or with HTTP Basic

Both hand out a session from :meth:`tally_local.sfsim.server.SalesforceSimulator.new_session`.
Secrets are compared in constant time (:func:`same_secret`).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import re
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from xml.etree import ElementTree

if TYPE_CHECKING:
    from tally_local.sfsim.handler import Handler

ORG_ID = "00D5j00000TaLLy"
USER_ID = "0055j00000TaLLy"
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


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


def random_string(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """``length`` characters drawn from ``alphabet`` with :mod:`secrets`."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def generate_credentials(username: str = "integration@tally.example") -> Credentials:
    """Fresh random secrets (alphanumeric, so they survive XML, URLs and env files unquoted)."""
    return Credentials(
        username=username,
        password=random_string(20),
        security_token=random_string(24),
        client_id="3MVG9" + random_string(80),
        client_secret=random_string(64, "0123456789ABCDEF"),
        admin_token=random_string(32),
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


def same_secret(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())


# --- login endpoints --------------------------------------------------------------------------


def soap_login(h: Handler, match: re.Match[str]) -> None:
    ns = "{urn:partner.soap.sforce.com}"
    try:
        root = ElementTree.fromstring(h.body)
        username = root.findtext(f".//{ns}login/{ns}username")
        password = root.findtext(f".//{ns}login/{ns}password")
    except ElementTree.ParseError as exc:
        h.reply(
            500, _soap_fault("soapenv:Client", f"Malformed SOAP request: {exc}"), "text/xml;charset=UTF-8"
        )
        return
    if username is None or password is None:
        h.reply(
            500,
            _soap_fault("soapenv:Client", "Expected login(username, password)"),
            "text/xml;charset=UTF-8",
        )
        return
    creds = h.server.credentials
    if not (
        same_secret(username.lower(), creds.username.lower())
        and same_secret(password, creds.password + creds.security_token)
    ):
        fault = _soap_fault(
            "sf:INVALID_LOGIN", f"INVALID_LOGIN: {INVALID_LOGIN}", "INVALID_LOGIN", INVALID_LOGIN
        )
        h.reply(500, fault, "text/xml;charset=UTF-8")
        return
    h.reply(
        200,
        _soap_login_response(
            h.client_base_url(),
            match["ver"],
            h.server.new_session(),
            creds.username,
            h.server.session_ttl,
        ),
        "text/xml;charset=UTF-8",
    )


def oauth_token(h: Handler, match: re.Match[str]) -> None:
    form = {k: v[0] for k, v in parse_qs(h.body.decode(errors="replace")).items()}
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, encoded = (h.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError):
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
    creds = h.server.credentials
    grant = form.get("grant_type")
    if grant not in ("client_credentials", "password"):
        h.reply(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        return
    if not (same_secret(client_id, creds.client_id) and same_secret(client_secret, creds.client_secret)):
        h.reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        return
    if grant == "password" and not (
        same_secret(form.get("username", "").lower(), creds.username.lower())
        and any(
            same_secret(form.get("password", ""), p)
            for p in (creds.password, creds.password + creds.security_token)
        )
    ):
        h.reply(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        return
    base, token = h.client_base_url(), h.server.new_session()
    issued_at = str(int(time.time() * 1000))
    signature = hmac.new(creds.client_secret.encode(), (base + issued_at).encode(), "sha256").digest()
    h.reply(
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


# --- SOAP documents ---------------------------------------------------------------------------


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
