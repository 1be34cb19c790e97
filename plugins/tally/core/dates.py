"""The one parser of dates and instants a user or a stage gives Tally.

A logical date (**ds**) is written ``YYYY-MM-DD`` and must be a real calendar date; an instant is
ISO 8601 with a UTC offset or ``Z`` (a naive one is read as UTC). Anything else is an
``InputError`` whose message names the expected form, in one line: never a guess (Postgres reads
``yesterday`` or ``12/02/2026`` as dates; Tally does not).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

_DS = re.compile(r"\d{4}-\d{2}-\d{2}")


class InputError(ValueError):
    """A value a user gave is not in the form Tally expects (the message says which form)."""


def parse_ds(value: str, what: str = "ds") -> str:
    """``value`` as a ds (``YYYY-MM-DD``, a real date), or ``InputError``."""
    text = str(value).strip()
    if not _DS.fullmatch(text):
        raise InputError(f"{what} must be a date as YYYY-MM-DD, got {value!r}")
    try:
        date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what} must be a real date as YYYY-MM-DD, got {value!r}") from None
    return text


def parse_instant(value: str, what: str = "instant") -> datetime:
    """``value`` as an aware UTC datetime (ISO 8601: ``2026-12-01T06:00:00Z``, ``2026-12-01``…)."""
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} must be ISO 8601 like 2026-12-01T06:00:00Z, got {value!r}") from None
    return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed).astimezone(UTC)


def ds_interval(ds: str) -> tuple[datetime, datetime]:
    """The data interval of a ds: its UTC day, ``[ds 00:00, ds+1 00:00)``."""
    start = datetime.combine(date.fromisoformat(parse_ds(ds)), time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)
