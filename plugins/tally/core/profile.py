"""Where the on-call commands find a deployment: a profile, one JSON file, read without the local rig.

``tally run``, ``reconcile``, ``extract`` and ``alerts`` reach the warehouse, the ERP, the lake,
Salesforce and Airflow's API through a :class:`Profile`, read from the file ``$TALLY_PROFILE``
names, else ``$TALLY_HOME/profile.json``. The local rig's ``tally up`` writes that default file
for the embedded stack (``tally_local.stack.manager``); for another deployment, write one by hand
or from its deployment tooling. The file holds credentials: keep it owner-only
(:func:`write` does).

The file's shape (``erp``, ``salesforce``, ``airflow`` and ``as_of`` are optional)::

    {"warehouse": {"host": ..., "port": ..., "user": ..., "password": ..., "dbname": ...},
     "erp": {... the same keys ...},
     "lake": "s3://bucket/prefix or a local directory",
     "salesforce": {"login_url": ..., "username": ..., "password": ..., "security_token": ...,
                    "ca_bundle": null},
     "airflow": {"url": "http://...", "user": ..., "password": ..., "password_file": null},
     "as_of": "2026-05-01T00:00:00+00:00"}

``as_of`` is the end (exclusive) of the source history loaded so far: ``tally run`` defaults to
the day before it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.core.config import PostgresConn, SalesforceConn, read_json, write_private_json
from tally.core.paths import tally_home

if TYPE_CHECKING:
    from tally.core.resources import Resources


@dataclass(frozen=True)
class AirflowApi:
    """Airflow's REST API and a login to it."""

    url: str
    user: str
    password: str
    password_file: str | None = None  # where a person finds the password (printed, never the password)


@dataclass(frozen=True)
class Profile:
    warehouse: PostgresConn
    lake: str
    erp: PostgresConn | None = None
    salesforce: SalesforceConn | None = None
    airflow: AirflowApi | None = None
    as_of: str | None = None

    def resources(self, run_id: str | None = None) -> Resources:
        """The resources a stage runs against in this deployment."""
        from tally.core.resources import Resources
        from tally.lake import Lake

        return Resources(lake=Lake(self.lake), warehouse=self.warehouse, erp=self.erp,
                         salesforce=self.salesforce, run_id=run_id)

    def default_ds(self) -> str:
        """The last day of the loaded history (the day before ``as_of``), else yesterday (UTC)."""
        end = datetime.fromisoformat(self.as_of) if self.as_of else datetime.now(UTC)
        return (end.date() - timedelta(days=1)).isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: asdict(v) if hasattr(v, "__dataclass_fields__") else v
                for f in fields(self) if (v := getattr(self, f.name)) is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        def part(kind, key):
            return kind(**data[key]) if data.get(key) else None

        return cls(warehouse=PostgresConn(**data["warehouse"]), lake=data["lake"], erp=part(PostgresConn, "erp"),
                   salesforce=part(SalesforceConn, "salesforce"), airflow=part(AirflowApi, "airflow"),
                   as_of=data.get("as_of"))


def profile_path(home: Path | None = None) -> Path:
    """``$TALLY_PROFILE``, else ``profile.json`` in ``home`` (default ``$TALLY_HOME``)."""
    if home is None and os.environ.get("TALLY_PROFILE"):
        return Path(os.environ["TALLY_PROFILE"]).expanduser().resolve()
    return (home or tally_home()) / "profile.json"


def load(path: Path | None = None) -> Profile | None:
    """The profile at ``path`` (default :func:`profile_path`), or None when there is none."""
    data = read_json(path or profile_path())
    return Profile.from_dict(data) if data else None


def write(profile: Profile, path: Path) -> None:
    """Write ``profile`` to ``path``, readable by its owner only."""
    write_private_json(path, profile.to_dict())
