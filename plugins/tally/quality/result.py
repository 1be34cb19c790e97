"""What a gate found: :class:`GateResult` (one suite on one batch), built from GX's results, and
its wording for on-call (:func:`describe_failure`, ``GateResult.summary``).

Importing this module is cheap (no Great Expectations): every gate, the validation log and the
alerts use it.

A gate never raises because data is bad: it returns a :class:`GateResult` saying what failed,
with observed and expected numbers and up to ``SAMPLE_SIZE`` offending values, and the caller
decides (the gates in ``tally.gates`` store the results and raise one ``DataProblem``). It does
raise when it cannot run: unknown suite, a ``$PARAMETER`` without a value, an unreachable
database (:class:`GateError`).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tally.quality.suites import expectation_columns, severity_of, split_name, suite_key

SAMPLE_SIZE = 10

class GateError(RuntimeError):
    """The gate could not run at all (no such table, a ``where`` that does not parse)."""



@dataclass
class GateResult:
    suite: str
    hop: str
    dataset: str
    success: bool
    evaluated: int
    failed: int
    # one per failed expectation: {"expectation", "column", "observed", "expected", "sample", ...}
    failures: list[dict] = field(default_factory=list)
    run_at: str = ""  # ISO UTC
    target: str = ""  # what was validated: a lake partition, a table and filter, a DataFrame
    parameters: dict = field(default_factory=dict)
    data_docs: str = ""  # the validation's Data Docs page, relative to the site (tally.quality.docs)
    # failed expectations of severity ``warn`` (meta.severity): recorded and shown, the gate passes;
    # ``failures`` and ``failed`` hold the ``fail`` ones only
    warnings: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.evaluated - self.failed - len(self.warnings)

    def summary(self) -> str:
        """One line for on-call, e.g. ``raw.salesforce.Opportunity: 2/3 passed;
        expect_table_row_count_to_equal observed 998 expected 1000``; warnings follow
        (``…: 7/8 passed, 1 warning; warning: expect_…``)."""
        head = f"{self.suite}: {self.passed}/{self.evaluated} passed" + warning_count(self.warnings)
        return "; ".join([head, *(describe_failure(f) for f in self.failures),
                          *(f"warning: {describe_failure(w)}" for w in self.warnings)])

    def to_dict(self) -> dict:
        return jsonable(asdict(self))



def from_gx(suite_dict: dict, result: Any, *, target: str, parameters: dict, key: list[str] | None = None,
            scales: Mapping[str, int] | None = None) -> GateResult:
    """The GateResult of a GX validation of ``suite_dict``, failures in the suite file's order.

    A failure's ``sample`` names the offending rows by ``key`` (default: the suite's,
    ``suite_key``) with the checked value beside (:func:`sample_item`); ``scales`` are the decimal
    scales of columns validated as floats, so money is shown as the column's type says."""
    name = suite_dict["name"]
    key = suite_key(suite_dict) if key is None else list(key)
    hop, dataset = split_name(name)
    order = {(e["type"], tuple(expectation_columns(e))): i for i, e in enumerate(suite_dict["expectations"])}

    def position(r: Any) -> int:
        cfg = r.expectation_config
        return order.get((cfg.type, tuple(columns_of(cfg.kwargs))), len(order))

    results = sorted(result.results, key=position)
    found = [_failure(r, key, scales or {}) for r in results if not r.success]
    failures = [f for f in found if f["severity"] == "fail"]
    return GateResult(
        suite=name,
        hop=hop,
        dataset=dataset,
        success=not failures,  # a warn-severity failure is kept, not failed
        evaluated=len(results),
        failed=len(failures),
        failures=failures,
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        target=target,
        parameters=jsonable(parameters),
        warnings=[f for f in found if f["severity"] != "fail"],
    )


def warning_count(warnings: list) -> str:
    """``, 1 warning`` / ``, 2 warnings``, or ``""`` without any."""
    return f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""


def columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    return expectation_columns({"kwargs": dict(kwargs)})


def _failure(r: Any, key: list[str], scales: Mapping[str, int]) -> dict:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs)
    res = dict(r.result or {})
    cols = columns_of(kwargs)
    failure: dict[str, Any] = {
        "expectation": cfg.type,
        "column": kwargs["column_list"] if "column_list" in kwargs else (cols[0] if len(cols) == 1 else cols or None),
        "severity": severity_of(cfg.meta),
    }
    error = _exception_message(r.exception_info)
    if error:
        failure.update(observed=None, expected=_expected(cfg.type, kwargs), sample=[], error=error)
    elif "unexpected_count" in res:
        mostly = kwargs.get("mostly", 1.0)
        failure.update(
            observed=res["unexpected_count"],
            expected=0 if mostly in (None, 1, 1.0) else {"mostly": mostly},
            condition=_condition(cfg.type, kwargs),
            element_count=res.get("element_count"),
            unexpected_count=res["unexpected_count"],
            unexpected_percent=res.get("unexpected_percent"),
            sample=_sample(res, key, cols, scales),
        )
        if key:
            failure["key"] = key
    else:
        failure.update(observed=res.get("observed_value"), expected=_expected(cfg.type, kwargs), sample=[])
    if cfg.meta and cfg.meta.get("notes"):
        failure["note"] = cfg.meta["notes"]
    return jsonable(failure)


def _sample(res: dict, key: list[str], cols: list[str], scales: Mapping[str, int]) -> list:
    """Up to ``SAMPLE_SIZE`` offending rows as ``{"key": {col: value}, "values": {col: value}}``
    (:func:`sample_item`): from GX's offending rows (``tally.quality.context.key_rows``), or from
    its offending values when they are the key themselves (a uniqueness check on the key); else
    the values alone, decimals at their scale."""
    values = list(res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
    rows = res.get("unexpected_rows")
    if key and isinstance(rows, list) and rows:
        # a check on the key (unique, not null; a mart's grain with its ds) shows the key alone
        shown = [] if set(key) <= set(cols) else [c for c in cols if c not in key]
        return [sample_item({k: r.get(k) for k in key}, {c: r.get(c) for c in shown if c in r}, scales)
                for r in rows[:SAMPLE_SIZE]]
    if key and values and set(key) <= set(cols):
        if len(cols) == 1:
            return [sample_item({key[0]: v}, {}, scales) for v in values]
        if all(isinstance(v, Mapping) for v in values):
            return [sample_item({k: v.get(k) for k in key}, {}, scales) for v in values]
    return [_scaled(v, scales.get(cols[0])) if len(cols) == 1 else v for v in values]


def sample_item(key: Mapping[str, Any], values: Mapping[str, Any], scales: Mapping[str, int]) -> dict:
    """One offending row of a sample: its key and the checked values, decimals at their scale."""
    return {"key": {k: _scaled(v, scales.get(k)) for k, v in key.items()},
            "values": {c: _scaled(v, scales.get(c)) for c, v in values.items()}}


def _scaled(value: Any, scale: int | None) -> Any:
    """A decimal as exact text (``-500.000000000``, never ``-5E+2``); a decimal column's value
    validated as a float, back at the column's scale. Other values unchanged."""
    if isinstance(value, decimal.Decimal):
        exact = value if scale is None or not value.is_finite() else value.quantize(_step(scale), context=_WIDE)
        return format(exact, "f")
    if scale is None or not isinstance(value, float) or not math.isfinite(value):
        return value
    if abs(value) >= _FLOAT_EXACT:  # the float the check saw is not the lake's exact value: say so
        return "≈" + format(decimal.Decimal(repr(value)), "f")
    return format(decimal.Decimal(repr(value)).quantize(_step(scale), context=_WIDE), "f")


_FLOAT_EXACT = 2.0 ** 53  # from here on a float64 no longer holds every whole number


_WIDE = decimal.Context(prec=80)  # decimal(38, 9) and wider quantize without InvalidOperation


def _step(scale: int) -> decimal.Decimal:
    return decimal.Decimal(1).scaleb(-scale)


def format_sample(item: Any) -> str:
    """One sample entry for people: ``payment_id P-123 (amount -500.000000000)`` for an offending
    row, else the value itself (a key, a file name...)."""
    if isinstance(item, Mapping) and isinstance(item.get("key"), Mapping):
        text = ", ".join(f"{k} {_shown(v)}" for k, v in item["key"].items())
        values = item.get("values") or {}
        if values:
            text += " (" + ", ".join(f"{c} {_shown(v)}" for c, v in values.items()) + ")"
        return text
    return _shown(item)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value.strip() == value and value else repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def _exception_message(info: Any) -> str | None:
    if not isinstance(info, dict):
        return None
    messages = [info] if info.get("raised_exception") else [
        v for v in info.values() if isinstance(v, dict) and v.get("raised_exception")  # keyed by metric
    ]
    for value in messages:
        lines = str(value.get("exception_message") or "error").strip().splitlines() or ["error"]
        return lines[0][:500]
    return None


def _expected(kind: str, kwargs: dict) -> Any:
    if "value" in kwargs:
        return kwargs["value"]
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        return lo if lo is not None and lo == hi else {"min": lo, "max": hi}
    if "value_set" in kwargs:
        return list(kwargs["value_set"])
    return {k: v for k, v in kwargs.items() if k not in ("batch_id", "column", "column_list", "result_format")}


def _number(value: Any) -> Any:
    """``500000.0`` → ``500000`` for people; anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _condition(kind: str, kwargs: dict) -> str:
    if "value_set" in kwargs:
        values = sorted(map(str, kwargs["value_set"]))
        return ("not in " if "not_be_in" in kind else "in ") + "{" + ", ".join(values) + "}"
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = (_number(kwargs.get(k)) for k in ("min_value", "max_value"))
        if lo is not None and hi is not None:
            return f"between {lo} and {hi}"
        return f">= {lo}" if lo is not None else f"<= {hi}"
    for word, text in (("not_be_null", "not null"), ("be_unique", "unique"), ("be_null", "null")):
        if word in kind:
            return text
    return kind.removeprefix("expect_").replace("_", " ")


def describe_failure(f: dict) -> str:
    """One clause per failure: what, where, observed vs expected, a few offending values."""
    col = f.get("column")
    where = f"({', '.join(col) if isinstance(col, list) else col})" if col else ""
    head = f"{f['expectation']}{where}"
    if f.get("error"):
        return f"{head} could not run: {f['error']}"
    if "unexpected_count" in f:
        what = f"not {f['condition']}" if f.get("condition") else "unexpected"  # e.g. not between 0 and 500000
        text = f"{head} observed {f['unexpected_count']} of {f.get('element_count')} rows {what}"
        if f.get("expected") not in (0, None):
            text += f" expected {f['expected']}"
        if f.get("sample"):
            text += ", e.g. " + ", ".join(format_sample(s) for s in f["sample"][:5])
        return text
    expected = f["expected"]
    if isinstance(expected, dict) and set(expected) == {"min", "max"}:
        lo, hi = expected["min"], expected["max"]
        expected = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
    return f"{head} observed {f['observed']} expected {expected}"


def jsonable(value: Any) -> Any:
    """Plain JSON types: Decimal -> str (exact), numpy -> Python, dates -> ISO, NaN -> None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return str(value)
