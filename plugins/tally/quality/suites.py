"""Expectation suites: versioned JSON files in ``expectations/`` (``tally.core.paths``), one per dataset and hop.

A suite file is named ``<hop>.<dataset>.json`` (``raw.salesforce.Opportunity.json``,
``mart.mart_rep_performance.json``) and holds Great Expectations 1.x's own suite JSON::

    {"name": "raw.salesforce.Opportunity",
     "expectations": [{"type": "expect_...", "kwargs": {...}, "meta": {...}}],
     "meta": {"notes": "what the suite guards", "parameters": {"source_count": "..."}}}

Runtime values are GX expectation parameters, ``{"$PARAMETER": "source_count"}``, filled in at
validation time.

An expectation's ``meta.severity`` says what its failure does: ``fail`` (the default) fails the
gate; ``warn`` is recorded with the result (``GateResult.warnings``, ``ops.validation_results``)
and shown in the gate summary, but the gate passes. It is handed to GX as the expectation's own
``severity`` (``critical`` / ``warning``). The outlier rule of a money column
(``meta.rule: "outlier"``, an ``expect_column_values_to_be_between`` with ``mostly: 1.0``) holds
the column's configured bounds and severity (docs/quality.md, "Outlier bounds").

Everything here except :func:`build_suite` is plain JSON handling and does not import GX
(which takes ~9 s to import).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.core.paths import expectations_dir

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

HOPS = ("raw", "curated", "warehouse", "mart")

# meta.severity -> GX's FailureSeverity value
SEVERITIES = {"fail": "critical", "warn": "warning"}

# kwargs naming the columns an expectation reads
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)


class SuiteError(ValueError):
    """A suite file is missing, malformed, or names an expectation GX does not know."""


def suites_dir(override: Path | str | None = None) -> Path:
    """The suites directory: ``override``, else ``tally.core.paths.expectations_dir()``
    (``$TALLY_EXPECTATIONS_DIR``, else ``<project>/expectations``)."""
    if override is not None:
        return Path(override)
    return expectations_dir()


def suite_path(name: str, directory: Path | str | None = None) -> Path:
    return suites_dir(directory) / f"{name}.json"


def split_name(name: str) -> tuple[str, str]:
    """``raw.salesforce.Opportunity`` -> ``("raw", "salesforce.Opportunity")``."""
    hop, sep, dataset = name.partition(".")
    if not sep or not dataset:
        raise SuiteError(f"suite name {name!r} is not '<hop>.<dataset>'")
    return hop, dataset


def list_suites(directory: Path | str | None = None) -> list[str]:
    return sorted(p.stem for p in suites_dir(directory).glob("*.json"))


def load_suite_dict(name: str, directory: Path | str | None = None) -> dict[str, Any]:
    """Read and sanity-check a suite file; returns the parsed JSON."""
    path = suite_path(name, directory)
    if not path.is_file():
        known = ", ".join(list_suites(directory)) or "none"
        raise SuiteError(f"no expectation suite {name!r}: {path} does not exist (known: {known})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite is a JSON object")
    if data.get("name") != name:
        raise SuiteError(f"{path}: 'name' is {data.get('name')!r}, expected {name!r} (the file name)")
    split_name(name)
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    for i, exp in enumerate(expectations):
        if not isinstance(exp, dict) or not str(exp.get("type", "")).startswith("expect_"):
            raise SuiteError(f"{path}: expectation #{i} has no 'type' starting with 'expect_'")
        if not isinstance(exp.get("kwargs", {}), dict):
            raise SuiteError(f"{path}: expectation #{i} ({exp['type']}): 'kwargs' must be an object")
        severity = (exp.get("meta") or {}).get("severity", "fail")
        if severity not in SEVERITIES:
            raise SuiteError(f"{path}: expectation #{i} ({exp['type']}): meta.severity is {severity!r}; "
                             f"use one of {', '.join(SEVERITIES)}")
    return data


def severity_of(meta: dict | None) -> str:
    """``fail`` or ``warn``: what an expectation's failure does (its ``meta.severity``)."""
    return str((meta or {}).get("severity") or "fail")


def expectation_columns(expectation: dict[str, Any]) -> list[str]:
    kwargs = expectation.get("kwargs", {})
    cols = [kwargs[k] for k in COLUMN_KWARGS if isinstance(kwargs.get(k), str)]
    for k in COLUMN_LIST_KWARGS:
        if isinstance(kwargs.get(k), list):
            cols.extend(c for c in kwargs[k] if isinstance(c, str))
    return cols


def suite_columns(suite: dict[str, Any]) -> list[str]:
    """The columns a suite reads, in first-use order (table-level expectations read none)."""
    seen: dict[str, None] = {}
    for exp in suite["expectations"]:
        for col in expectation_columns(exp):
            seen.setdefault(col, None)
    return list(seen)


_UNIQUE_TYPES = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def suite_key(suite: dict[str, Any]) -> list[str]:
    """The key column(s) of the suite's dataset, which name the offending rows in a failure's
    sample: ``meta.key`` (a column or a list) if the suite sets it, else the columns of its first
    uniqueness expectation (a mart's grain without ``ds``, constant in a ds slice); ``[]`` if
    neither. Tests check these agree with ``tally.catalog`` and ``tally.contract.CURATED_KEYS``."""
    declared = (suite.get("meta") or {}).get("key")
    if declared:
        return [declared] if isinstance(declared, str) else [str(c) for c in declared]
    for exp in suite["expectations"]:
        if exp.get("type") in _UNIQUE_TYPES:
            cols = expectation_columns(exp)
            return [c for c in cols if c != "ds"] or cols
    return []


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def suite_parameters(suite: dict[str, Any]) -> list[str]:
    """Names of the ``$PARAMETER`` values the suite needs at validation time (sorted)."""
    names = {
        node["$PARAMETER"]
        for exp in suite["expectations"]
        for node in _walk(exp.get("kwargs", {}))
        if isinstance(node, dict) and isinstance(node.get("$PARAMETER"), str)
    }
    return sorted(names)


def build_suite(suite: dict[str, Any]) -> ExpectationSuite:
    """A GX ``ExpectationSuite`` from the parsed file (imports GX).

    GX's constructor logs and *drops* an expectation it cannot build (unknown type, bad
    kwargs); a gate silently running fewer checks than reviewed is worse than failing, so
    this raises instead.
    """
    import inspect

    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    # GX's own severity (1.5.11+): shown in Data Docs; what a warning does is Tally's (from_gx)
    graded = "severity" in inspect.signature(ExpectationConfiguration).parameters
    built = []
    for i, exp in enumerate(suite["expectations"]):
        try:
            severity = {"severity": SEVERITIES[severity_of(exp.get("meta"))]} if graded else {}
            config = ExpectationConfiguration(
                type=exp["type"], kwargs=dict(exp.get("kwargs", {})), meta=exp.get("meta"),
                notes=exp.get("notes"), **severity,
            )
            built.append(config.to_domain_obj())
        except Exception as exc:
            raise SuiteError(
                f"suite {suite['name']!r}: expectation #{i} ({exp.get('type')}) is not valid for GX: {exc}"
            ) from exc
    return ExpectationSuite(name=suite["name"], expectations=built, meta=dict(suite.get("meta") or {}),
                            notes=suite.get("notes"))
