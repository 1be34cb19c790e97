"""Type the ERP's text into the raw zone's exact types, and set aside rows that cannot be.

One code path for every dialect: a batch of text columns (as the database rendered them) is
cast column by column with Arrow compute (C++, no Python object per value):

* ``int`` / ``decimal`` / ``double`` / ``date``: a strict cast (surrounding blanks are
  tolerated). Money becomes ``decimal(38, 9)`` exactly (never float); ``1,234.50`` and ``1.234,50``
  are ambiguous and are *not* guessed: they are quarantined.
* ``datetime``: a value with an offset (Postgres ``timestamptz``) is converted to UTC; a value
  without one (MySQL ``DATETIME``/``TIMESTAMP``, Postgres ``timestamp``) is read in the
  source's time zone (UTC unless configured) and converted to UTC.
* ``bool``: ``t/f``, ``true/false``, ``1/0``, ``y/n``, ``yes/no`` (any case).
* ``string`` / ``id``: the text as is.

A row is **quarantined** when a required (non-nullable) field is null, a value does not
parse as its field's type, or (with ``future``) its cursor is later than the cutoff
(``updated_at in the future``). The quarantine batch keeps every value as the source's text plus a
``reason`` ("null order_id", "amount: not a decimal"; several joined by "; "). Clean batches
take the vectorised path only; a batch with a bad value finds it by bisection, so the cost is
O(bad values × log(batch)) casts, not one per value.

**CSV fast path** (Postgres ``COPY … (FORMAT csv)``, ``Converter.convert_csv``): Arrow's CSV
reader parses the block straight into the target types, which costs about a third of parsing
text and casting it afterwards. Arrow is stricter than the casts above, never looser: a block
it refuses (a naive timestamp, ``t``/``f`` spelt otherwise, a value that does not parse…)
takes the text path instead, so both paths land the same values. Nulls in required fields are
found on the typed block; only those rows are re-read as text for the quarantine. After a
couple of refused blocks (a source whose timestamps have no offset) the fast path is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tally.catalog import Field
from tally.lake import ARROW_TYPES
from tally.sources.quarantine import future_reason, quarantine_schema

TRUE_TEXT = ["t", "true", "1", "y", "yes"]
FALSE_TEXT = ["f", "false", "0", "n", "no"]
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def _timestamp(timezone: str) -> Callable[[pa.Array], pa.Array]:
    utc = ARROW_TYPES["datetime"]

    def cast(arr: pa.Array) -> pa.Array:
        try:
            return pc.cast(arr, utc)
        except _CAST_ERRORS:
            naive = pc.cast(arr, pa.timestamp("us"))
            if timezone == "UTC":
                return naive.cast(utc)
            return pc.assume_timezone(naive, timezone=timezone).cast(utc)

    return cast


def _bool(arr: pa.Array) -> pa.Array:
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    truthy = pc.is_in(norm, value_set=pa.array(TRUE_TEXT))
    falsy = pc.is_in(norm, value_set=pa.array(FALSE_TEXT))
    if pc.any(pc.and_(pc.is_valid(norm), pc.invert(pc.or_(truthy, falsy)))).as_py():
        raise pa.ArrowInvalid("not a boolean")
    return pc.if_else(pc.is_null(norm), pa.scalar(None, pa.bool_()), truthy)


def caster(f: Field, timezone: str = "UTC") -> Callable[[pa.Array], pa.Array]:
    """A vectorised text -> typed cast for ``f`` that raises on any unparseable value."""
    if f.type in ("string", "id"):
        return lambda arr: arr
    if f.type == "bool":
        return _bool
    if f.type == "datetime":
        return _timestamp(timezone)
    target = ARROW_TYPES[f.type]

    def cast(arr: pa.Array) -> pa.Array:
        try:
            return pc.cast(arr, target)
        except _CAST_ERRORS:  # stray blanks (" 12.50 ") are fine; trimming costs, so only on failure
            return pc.cast(pc.utf8_trim_whitespace(arr), target)

    return cast


def cast_tolerant(arr: pa.Array, cast: Callable[[pa.Array], pa.Array], target: pa.DataType
                  ) -> tuple[pa.Array, np.ndarray | None]:
    """Cast ``arr``; values that do not parse become null and are flagged in the returned mask."""
    try:
        return cast(arr), None
    except _CAST_ERRORS:
        pass
    bad = np.zeros(len(arr), dtype=bool)
    pieces: list[pa.Array] = []

    def walk(lo: int, hi: int) -> None:
        part = arr.slice(lo, hi - lo)
        try:
            pieces.append(cast(part))
            return
        except _CAST_ERRORS:
            if hi - lo == 1:
                bad[lo] = True
                pieces.append(pa.nulls(1, target))
                return
        mid = (lo + hi) // 2
        walk(lo, mid)
        walk(mid, hi)

    walk(0, len(arr))
    return pa.concat_arrays([p.cast(target) for p in pieces]), bad


@dataclass
class Converted:
    good: pa.RecordBatch  # typed, only the rows that parsed
    keep: pa.BooleanArray | None  # which input rows are in ``good`` (None: all of them)
    bad: pa.RecordBatch | None  # text of the quarantined rows plus ``reason``


def _bool_spellings() -> tuple[list[str], list[str]]:
    """The spellings Arrow's CSV reader takes as booleans: ``TRUE_TEXT``/``FALSE_TEXT`` in lower,
    upper and title case (other mixes make Arrow refuse the block, and the text path decides)."""
    def spell(words: list[str]) -> list[str]:
        return sorted({v for w in words for v in (w, w.upper(), w.title())})

    return spell(TRUE_TEXT), spell(FALSE_TEXT)


class Converter:
    """Types batches of one table's text (the fields, in the catalog's order)."""

    FAST_PATH_REFUSALS = 2  # CSV blocks Arrow may refuse before the fast path is given up

    def __init__(self, fields: tuple[Field, ...], timezone: str = "UTC",
                 future: tuple[str, datetime] | None = None) -> None:
        """``future``: (cursor field, cutoff): a row whose cursor is later than the cutoff is
        quarantined as ``<cursor> in the future`` (``tally.sources.quarantine``)."""
        self.fields = fields
        self.schema = pa.schema([pa.field(f.name, ARROW_TYPES[f.type]) for f in fields])
        self.quarantine_schema = quarantine_schema(fields)
        self._casts = [caster(f, timezone) for f in fields]
        self._refusals = 0
        self._csv_types = {f.name: ARROW_TYPES[f.type] for f in fields if f.type not in ("string", "id")}
        self._bool_text = _bool_spellings()
        self._future = None
        if future is not None:
            cursor, cutoff = future
            self._future = ([f.name for f in fields].index(cursor), future_reason(cursor),
                            pa.scalar(cutoff, ARROW_TYPES["datetime"]))

    def _future_rows(self, batch: pa.RecordBatch, problems: dict[str, np.ndarray]) -> None:
        """Flag the rows whose cursor is later than the cutoff (in ``problems``)."""
        if self._future is None or not batch.num_rows:
            return
        index, reason, cutoff = self._future
        later = pc.fill_null(pc.greater(batch.column(index), cutoff), False)
        if pc.any(later).as_py():
            problems[reason] = later.to_numpy(zero_copy_only=False)

    def convert_csv(self, blob: bytes, columns: list[str]) -> Converted:
        """Type a Postgres CSV block whose ``columns`` are the fields."""
        from tally.sources.erp.dialect import parse_csv

        if self._refusals >= self.FAST_PATH_REFUSALS or not blob:
            return self.convert(parse_csv(blob, columns))
        try:
            typed = parse_csv(blob, columns, self._csv_types, self._bool_text)
        except _CAST_ERRORS:
            self._refusals += 1
            return self.convert(parse_csv(blob, columns))
        batch = pa.RecordBatch.from_arrays([typed.column(f.name) for f in self.fields], schema=self.schema)
        problems = {f"null {f.name}": typed.column(f.name).is_null().to_numpy(zero_copy_only=False)
                    for f in self.fields if not f.nullable and typed.column(f.name).null_count}
        self._future_rows(batch, problems)
        if not problems:
            return Converted(batch, None, None)
        bad = np.logical_or.reduce(list(problems.values()))
        bad_rows = np.flatnonzero(bad)
        if b'"' in blob:  # a quoted value may hold a line break: re-read the whole block as text
            text_bad = parse_csv(blob, columns).take(pa.array(bad_rows))
        else:
            lines = blob.split(b"\n")
            text_bad = parse_csv(b"".join(lines[i] + b"\n" for i in bad_rows), columns)
        keep = pa.array(~bad)
        return Converted(batch.filter(keep), keep, self._quarantined(text_bad, problems, bad_rows))

    def convert(self, text: pa.RecordBatch) -> Converted:
        columns, problems = [], {}
        for f, cast in zip(self.fields, self._casts, strict=True):
            raw = text.column(f.name)
            typed, unparseable = cast_tolerant(raw, cast, ARROW_TYPES[f.type])
            columns.append(typed)
            if unparseable is not None and unparseable.any():
                problems[f"{f.name}: not a {f.type}"] = unparseable
            if not f.nullable and raw.null_count:
                problems[f"null {f.name}"] = raw.is_null().to_numpy(zero_copy_only=False)
        typed_batch = pa.RecordBatch.from_arrays(columns, schema=self.schema)
        self._future_rows(typed_batch, problems)
        if not problems:
            return Converted(typed_batch, None, None)
        bad = np.logical_or.reduce(list(problems.values()))
        bad_rows = np.flatnonzero(bad)
        text_bad = text.take(pa.array(bad_rows))
        keep = pa.array(~bad)
        return Converted(typed_batch.filter(keep), keep, self._quarantined(text_bad, problems, bad_rows))

    def _quarantined(self, text_bad: pa.RecordBatch, problems: dict[str, np.ndarray],
                     bad_rows: np.ndarray) -> pa.RecordBatch:
        """The bad rows as the source's text, with every reason that applies to each."""
        reasons = ["; ".join(label for label, m in problems.items() if m[i]) for i in bad_rows]
        return pa.RecordBatch.from_arrays([*(text_bad.column(f.name) for f in self.fields),
                                           pa.array(reasons, pa.string())], schema=self.quarantine_schema)
