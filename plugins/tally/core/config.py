"""The connections every stage reads (Postgres, Salesforce) and private JSON files. Where the
project's folders are is ``tally.core.paths``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PostgresConn:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self) -> str:
        """libpq keyword string; psycopg quotes nothing here, so values must not contain spaces."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.dbname}"
        )

    def uri(self, driver: str = "postgresql") -> str:
        from urllib.parse import quote

        return f"{driver}://{quote(self.user)}:{quote(self.password)}@{self.host}:{self.port}/{self.dbname}"

    def redacted(self) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class SalesforceConn:
    login_url: str
    username: str
    password: str
    security_token: str
    api_version: str = "62.0"
    ca_bundle: str | None = None  # path for requests' verify=, or None for the system store
    # OAuth 2.0 client credentials flow (a connected app), used when no username is given
    client_id: str | None = None
    client_secret: str | None = None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_private_json(path: Path, data: dict) -> None:
    """Write JSON readable by the owner only (it holds local credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    tmp.replace(path)
