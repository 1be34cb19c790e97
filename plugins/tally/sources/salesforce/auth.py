"""Log in to Salesforce (or the simulator) at a configurable login URL.

simple-salesforce hard-codes ``https://{domain}.salesforce.com`` for its own login, so Tally logs
in here and then builds ``Salesforce(instance_url=..., session_id=..., session=...)``.
:func:`login` reuses simple-salesforce's SOAP envelope and response parsing
(``SalesforceLogin(scratch_url=...)``); :func:`connect` does login + client construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.login import SalesforceLogin

DEFAULT_API_VERSION = "62.0"


class SalesforceAuthError(SalesforceAuthenticationFailed):
    """Login refused. ``code`` and ``auth_message`` are Salesforce's (never the password).

    Subclasses simple-salesforce's ``SalesforceAuthenticationFailed``, so either can be caught.
    """

    def __init__(self, code: str | int | None, message: str | None) -> None:
        super().__init__(code, message)

    @property
    def error_code(self) -> str | int | None:
        return self.code


class VerifyingSession(requests.Session):
    """A ``requests.Session`` whose ``verify`` really applies.

    Plain sessions let ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``session.verify``
    whenever a request does not pass ``verify=`` itself (requests issue #3829), and
    simple-salesforce never passes it: a CA bundle set on the session would be silently ignored.
    """

    def __init__(self, verify: bool | str | Path = True) -> None:
        super().__init__()
        self.verify = str(verify) if isinstance(verify, Path) else verify

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None:
            settings["verify"] = self.verify
        return settings


def login(
    login_url: str,
    username: str,
    password: str,
    security_token: str,
    api_version: str = DEFAULT_API_VERSION,
    session: requests.Session | None = None,
) -> tuple[str, str]:
    """SOAP ``login`` at ``{login_url}/services/Soap/u/{api_version}``; return ``(session_id, instance_url)``.

    ``instance_url`` is ``https://host[:port]`` of the ``serverUrl`` Salesforce answers with.
    Pass a :class:`VerifyingSession` to control TLS verification.
    """
    try:
        # Token appended to the password *before* XML escaping: simple-salesforce escapes the
        # password but not the security token, so a token with '&' or '<' would break the envelope.
        session_id, instance = SalesforceLogin(
            username=username,
            password=password + security_token,
            security_token="",
            sf_version=api_version,
            session=session,
            scratch_url=login_url.rstrip("/"),
        )
    except SalesforceAuthenticationFailed as exc:
        raise SalesforceAuthError(exc.code, exc.auth_message) from None
    return session_id, f"https://{instance}"


def login_client_credentials(
    login_url: str,
    client_id: str,
    client_secret: str,
    session: requests.Session | None = None,
) -> tuple[str, str]:
    """OAuth 2.0 client-credentials flow; return ``(access_token, instance_url)``."""
    response = (session or requests).post(
        f"{login_url.rstrip('/')}/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
        timeout=60,
    )
    try:
        body = response.json()
    except ValueError:
        raise SalesforceAuthError(response.status_code, response.text[:500]) from None
    if response.status_code != 200 or not body.get("access_token") or not body.get("instance_url"):
        raise SalesforceAuthError(body.get("error", response.status_code), body.get("error_description"))
    return body["access_token"], body["instance_url"].rstrip("/")


def connect(
    login_url: str,
    credentials: Mapping[str, str],
    *,
    verify: bool | str | Path = True,
    api_version: str = DEFAULT_API_VERSION,
    session: requests.Session | None = None,
) -> Salesforce:
    """A logged-in ``simple_salesforce.Salesforce``.

    ``credentials`` holds ``username``/``password``/``security_token`` (SOAP login, preferred) or
    ``client_id``/``client_secret`` (client-credentials flow). ``verify`` is ``requests``'
    ``verify=`` (a CA bundle path for the simulator); it is ignored when ``session`` is given.
    """
    session = session or VerifyingSession(verify)
    if credentials.get("username"):
        session_id, instance_url = login(
            login_url,
            credentials["username"],
            credentials["password"],
            credentials.get("security_token", ""),
            api_version,
            session,
        )
    else:
        session_id, instance_url = login_client_credentials(
            login_url, credentials["client_id"], credentials["client_secret"], session
        )
    return Salesforce(instance_url=instance_url, session_id=session_id, session=session, version=api_version)
