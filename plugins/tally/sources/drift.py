"""Schema drift at a source: the one comparison of a source's columns with what was landed before.

Every interval source (Salesforce's ``describe``, the ERP's ``information_schema.columns``)
records in each ds's manifest the columns the source had (``source_fields``: name -> the
source's type for it) and the comparison (``schema_drift``, :meth:`Drift.to_dict`):

* **added**: a column the source has now that the previous committed ds's ``source_fields``
  did not have and that is not landed (none on a table's first ds: there is no "before");
* **removed**: a landed column the source no longer has (it lands as null);
* **retyped**: a landed column whose type is not the one it had (``landed``) and has now
  (``now``).

The raw gate (``tally.gates.raw.schema_check``) fails on removed and retyped columns and
records added ones as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Drift:
    added: dict[str, str] = field(default_factory=dict)  # name -> the source's type for it
    removed: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (landed, now)

    @property
    def breaking(self) -> bool:
        return bool(self.removed or self.retyped)

    def to_dict(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed),
                "retyped": {k: {"landed": a, "now": b} for k, (a, b) in self.retyped.items()}}


def compare(landed: Mapping[str, str | None], now: Mapping[str, str], previous: Mapping[str, str] | None) -> Drift:
    """Compare the source's columns ``now`` (name -> type) with what was landed.

    ``landed``: each landed column -> the type it must still have (None: the type the previous
    ds saw, if any); ``previous``: the previous committed ds's ``source_fields`` (None on the
    first ds, or when it recorded none)."""
    drift = Drift()
    for name, was in landed.items():
        if name not in now:
            drift.removed.append(name)
            continue
        expected = was if was is not None else (previous or {}).get(name)
        if expected is not None and now[name] != expected:
            drift.retyped[name] = (expected, now[name])
    if previous is not None:
        drift.added = {n: t for n, t in now.items() if n not in previous and n not in landed}
    return drift
