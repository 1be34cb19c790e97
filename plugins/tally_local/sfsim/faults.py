"""Deterministic fault injection for the Salesforce simulator.

A :class:`Faults` value says which failures the server produces and when. Windows are counted
in *API calls*: every request whose path is under ``/services/data/v{ver}/`` (REST queries,
describe, limits, Bulk API 2.0 jobs, ...), numbered 1, 2, 3... from the moment the faults were
set (or the counters were reset), whatever its outcome: a refused, faulted or unauthenticated
call counts too. Logins, ``/health`` and ``/__admin`` are not API calls. "``X_after = N``"
means calls ``N+1 .. N+count`` are hit; ``None`` switches a fault off.

For one call the checks run in this order: connection reset, 5xx burst, session expiry
(fires once, at the first call past ``expire_session_after``: every session that exists then
becomes invalid, so that call answers 401 ``INVALID_SESSION_ID``; a new login works), session
check, rate limit (403 ``REQUEST_LIMIT_EXCEEDED``). Only calls that pass all of them add to the
API usage reported in ``Sforce-Limit-Info: api-usage=USED/MAX`` and ``/limits``
(``USED = api_usage + such calls``; like Salesforce's soft limit, USED may exceed MAX).

``describe_drift`` changes what the org looks like without touching the store::

    {"Opportunity": {"add": [{"name": "Region__c", "type": "string"}],
                     "remove": ["Probability"],
                     "retype": {"Amount": "string"}}}

* removed fields vanish from describe, and SOQL naming them fails with 400 ``INVALID_FIELD``
  (``No such column 'Probability' on entity 'Opportunity'...``), REST and Bulk alike;
* added fields appear in describe and are queryable (also in WHERE/ORDER BY). Their value is
  deterministic: ``f"{name}-{Id[-4:]}"`` for ``string``/``id`` fields, ``null`` for every other
  type;
* retyped fields are described with the new type and returned in its JSON form, converted from
  the stored value (``1242.56`` -> ``"1242.56"`` when a decimal becomes a string; ``"true"`` ->
  ``true`` for string -> bool; unconvertible values become ``null``). Filters compare the
  converted value, and literals must have the new type's kind, as in Salesforce.

``Id`` and the deleted flag can be neither removed nor retyped.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date
from typing import Any

from tally.catalog import Dataset, Field
from tally_local.sfsim.soql import VIRTUAL_COLUMNS, format_datetime, parse_datetime, quote_ident

LOGICAL_TYPES = ("id", "string", "bool", "int", "decimal", "double", "date", "datetime")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}\Z")
_DRIFT_KEYS = {"add", "remove", "retype"}


@dataclass(frozen=True)
class Faults:
    """What the simulator gets wrong, and when. JSON-serialisable (:meth:`to_json`)."""

    # 403 REQUEST_LIMIT_EXCEEDED for calls rate_limit_after+1 .. rate_limit_after+rate_limit_calls
    rate_limit_after: int | None = None
    rate_limit_calls: int = 1_000_000_000
    # every live session is invalidated once, at the first call past this number
    expire_session_after: int | None = None
    # a burst of errors_5xx_count responses with errors_5xx_status
    errors_5xx_after: int | None = None
    errors_5xx_count: int = 3
    errors_5xx_status: int = 503
    # reset_count connections closed (TCP RST) without any response
    reset_after: int | None = None
    reset_count: int = 1
    # Sforce-Limit-Info: api-usage=USED/MAX, with USED starting at api_usage
    api_daily_max: int = 15000
    api_usage: int = 0
    # {object: {"add": [{"name", "type"}], "remove": [field], "retype": {field: type}}}
    describe_drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    # REST query page size (overrides the server's); None keeps the server's
    page_size: int | None = None
    # Bulk API 2.0: job info polls until a query job reports JobComplete (<= 1: the first poll)
    bulk_polls_until_complete: int = 2
    # Bulk API 2.0: jobs created while this is set end in state Failed with this errorMessage
    bulk_job_failure: str | None = None

    def __post_init__(self) -> None:
        for name in ("rate_limit_after", "expire_session_after", "errors_5xx_after", "reset_after"):
            _check_int(name, getattr(self, name), optional=True)
        for name in ("rate_limit_calls", "errors_5xx_count", "reset_count", "api_usage"):
            _check_int(name, getattr(self, name))
        _check_int("bulk_polls_until_complete", self.bulk_polls_until_complete)
        _check_int("api_daily_max", self.api_daily_max, minimum=1)
        _check_int("page_size", self.page_size, optional=True, minimum=1)
        _check_int("errors_5xx_status", self.errors_5xx_status, minimum=500)
        if self.errors_5xx_status > 599:
            raise ValueError(f"errors_5xx_status must be 500..599, not {self.errors_5xx_status}")
        if self.bulk_job_failure is not None and not isinstance(self.bulk_job_failure, str):
            raise ValueError("bulk_job_failure must be a string or null")
        object.__setattr__(self, "describe_drift", _normalise_drift(self.describe_drift))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Faults:
        """Build from a mapping (e.g. parsed JSON); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> Faults:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"faults are not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def drifted(self, catalog: Mapping[str, Dataset]) -> dict[str, Dataset]:
        """``catalog`` as the org looks with ``describe_drift`` applied (validated against it)."""
        return apply_drift(catalog, self.describe_drift)


def _check_int(name: str, value: object, *, optional: bool = False, minimum: int = 0) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}{' or null' if optional else ''}, not {value!r}"
        )


def _check_type(where: str, kind: object) -> str:
    if kind not in LOGICAL_TYPES:
        raise ValueError(f"{where}: type must be one of {list(LOGICAL_TYPES)}, not {kind!r}")
    return str(kind)


def _check_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{where}: {name!r} is not a valid field name")
    return name


def _normalise_drift(drift: object) -> dict[str, dict[str, Any]]:
    """A deep, validated copy: ``{obj: {"add": [...], "remove": [...], "retype": {...}}}``."""
    if not isinstance(drift, Mapping):
        raise ValueError("describe_drift must be an object keyed by sObject name")
    out: dict[str, dict[str, Any]] = {}
    for obj, spec in drift.items():
        if not isinstance(spec, Mapping) or set(spec) - _DRIFT_KEYS:
            raise ValueError(
                f"describe_drift[{obj!r}] must be an object with keys among {sorted(_DRIFT_KEYS)}"
            )
        add = []
        for item in spec.get("add", []):
            if not isinstance(item, Mapping) or set(item) != {"name", "type"}:
                raise ValueError(f"describe_drift[{obj!r}].add items are {{'name': ..., 'type': ...}}")
            add.append(
                {
                    "name": _check_name(f"describe_drift[{obj!r}].add", item["name"]),
                    "type": _check_type(f"describe_drift[{obj!r}].add", item["type"]),
                }
            )
        remove = [_check_name(f"describe_drift[{obj!r}].remove", n) for n in spec.get("remove", [])]
        retype_spec = spec.get("retype", {})
        if not isinstance(retype_spec, Mapping):
            raise ValueError(f"describe_drift[{obj!r}].retype must map field names to types")
        retype = {
            _check_name(f"describe_drift[{obj!r}].retype", n): _check_type(
                f"describe_drift[{obj!r}].retype", t
            )
            for n, t in retype_spec.items()
        }
        out[str(obj)] = {"add": add, "remove": remove, "retype": retype}
    return out


def apply_drift(catalog: Mapping[str, Dataset], drift: Mapping[str, Mapping[str, Any]]) -> dict[str, Dataset]:
    """A copy of ``catalog`` with the drift applied; ``ValueError`` if it names unknown things.

    Added and retyped fields become *virtual columns* (``Dataset.extra[VIRTUAL_COLUMNS]``): SQL
    expressions over the stored row, computed by the SQLite functions :func:`register_functions`
    installs (the store registers them on every connection).
    """
    out = dict(catalog)
    lowered = {name.lower(): name for name in catalog}
    for obj, spec in _normalise_drift(drift).items():
        if obj.lower() not in lowered:
            raise ValueError(f"describe_drift: unknown sObject {obj!r}; known: {list(catalog)}")
        ds = catalog[lowered[obj.lower()]]
        by_name = {f.name.lower(): f for f in ds.fields}
        protected = {ds.key.lower(), (ds.deleted_flag or "").lower()}

        def existing(
            name: str, what: str, ds: Dataset = ds, by_name: dict = by_name, protected: set = protected
        ) -> Field:
            f = by_name.get(name.lower())
            if f is None:
                raise ValueError(f"describe_drift: cannot {what} {ds.name}.{name}: no such field")
            if name.lower() in protected:
                raise ValueError(f"describe_drift: cannot {what} {ds.name}.{f.name}")
            return f

        removed = {existing(n, "remove").name for n in spec["remove"]}
        retyped = {existing(n, "retype").name: t for n, t in spec["retype"].items()}
        virtual = dict(ds.extra.get(VIRTUAL_COLUMNS, {}))
        new_fields = []
        for f in ds.fields:
            if f.name in removed:
                virtual.pop(f.name, None)
                continue
            if f.name in retyped and retyped[f.name] != f.type:
                source = virtual.get(f.name, quote_ident(f.name))
                virtual[f.name] = f"sfsim_cast({source}, '{f.type}', '{retyped[f.name]}')"
                f = replace(f, type=retyped[f.name])
            new_fields.append(f)
        for item in spec["add"]:
            if item["name"].lower() in by_name and item["name"].lower() not in {r.lower() for r in removed}:
                raise ValueError(f"describe_drift: cannot add {ds.name}.{item['name']}: it exists")
            new_fields.append(Field(item["name"], item["type"]))
            virtual[item["name"]] = f"sfsim_added('{item['name']}', '{item['type']}', {quote_ident(ds.key)})"
        out[ds.name] = replace(ds, fields=tuple(new_fields), extra={**ds.extra, VIRTUAL_COLUMNS: virtual})
    return out


# --- SQLite functions behind the virtual columns ----------------------------------------------


def added_value(name: str, kind: str, key: object) -> object:
    """The value of a drift-added field: ``f"{name}-{Id[-4:]}"`` for text types, else null."""
    if kind in ("string", "id") and key is not None:
        return f"{name}-{str(key)[-4:]}"
    return None


def plain_number(value: float | int) -> str:
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    if "e" in text or "E" in text:
        from decimal import Decimal

        text = format(Decimal(text), "f")
    return text


def cast_value(value: object, old: str, new: str) -> object:
    """A stored value of logical type ``old`` in the stored form of type ``new`` (None if impossible)."""
    if value is None:
        return None
    try:
        if new in ("string", "id"):
            if old == "bool":
                return "true" if value else "false"
            if isinstance(value, int | float):
                return plain_number(value)
            return str(value)
        if new in ("decimal", "double"):
            return float(value) if not isinstance(value, str) else float(value.strip())
        if new == "int":
            number = float(value) if not isinstance(value, str) else float(value.strip())
            return int(number) if number.is_integer() else None
        if new == "bool":
            if isinstance(value, str):
                return {"true": 1, "false": 0, "1": 1, "0": 0}.get(value.strip().lower())
            return 1 if value else 0
        if new == "date":
            text = str(value)
            if old == "datetime":
                return parse_datetime(text).date().isoformat()
            return date.fromisoformat(text[:10]).isoformat()
        if new == "datetime":
            text = str(value)
            if old == "date" or len(text) == 10:
                return f"{date.fromisoformat(text).isoformat()}T00:00:00.000+0000"
            return format_datetime(parse_datetime(text))
    except (ValueError, TypeError, OverflowError):
        return None
    return None


def register_functions(conn: sqlite3.Connection) -> None:
    """Install ``sfsim_added`` and ``sfsim_cast`` on a connection (virtual drift columns)."""
    conn.create_function("sfsim_added", 3, added_value, deterministic=True)
    conn.create_function("sfsim_cast", 3, cast_value, deterministic=True)
