"""The Great Expectations runtime of a process: one ephemeral GX context, created on first use
and reused; running a suite on a batch; validating an in-memory DataFrame; publishing to Data Docs.

Core code (no Airflow). ``great_expectations`` is imported only inside the functions that
validate (it takes ~9 s), and one ephemeral GX context is created per process and reused. In
Airflow, the scheduler imports GX once and warms it up (``tally.airflow.preload``, :func:`warm_up`)
before it forks the LocalExecutor's workers, so every gate task, forked from a worker, starts
with GX loaded; other processes (DAG parsing, the CLI) pay the import only when they validate.

Every GX validation is also published to the Data Docs site (``tally.quality.docs``); the
result's ``data_docs`` names its page. Lake partitions are validated by
``tally.quality.parquet``, Postgres tables by ``tally.quality.postgres``.

Numbers: GX compares aggregate expectations (row counts, sums) after converting
``Decimal`` to ``float``, both the observed value and the parameter. Sums of exact money
columns are therefore compared to ~15 significant digits; pass the expected sum as a
``Decimal`` (or its string), never as a float computed by float arithmetic, so both sides
go through the same single rounding.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.quality.result import SAMPLE_SIZE, GateResult, columns_of, from_gx
from tally.quality.suites import (
    build_suite,
    expectation_columns,
    load_suite_dict,
    suite_columns,
    suite_key,
    suite_parameters,
)

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.data_context import AbstractDataContext

# BASIC: counts and the first offending values, all a gate reports; SUMMARY would add value counts
# and index lists, ~30 % more GX time per validation for nothing on-call reads
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}
# the same without the sample: GX looks for offending values with one more query per row-level
# expectation even when it counted none, and in SQL that query scans the whole batch to find
# nothing (27 of the mart gate's 43 queries). Suites run with this first; only expectations
# that counted offending rows are run again with RESULT_FORMAT for their sample (run_suite).
COUNTS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
# the sample pass of a dataset with a key also returns the offending rows (LIMIT-ed like the
# values), so that a sample names each row's key beside its value (tally.quality.result)
ROWS_FORMAT = {**RESULT_FORMAT, "include_unexpected_rows": True}
# aggregate metrics whose pandas implementation converts Decimal columns in place (mutating the
# caller's frame) and crashes on a null among Decimals
_DECIMAL_AGGREGATES = ("expect_column_sum_", "expect_column_mean_", "expect_column_stdev_")
_PANDAS_DATASOURCE = "tally_pandas"
LOCK = threading.RLock()
_CONTEXT: AbstractDataContext | None = None
_CONTEXT_PID = 0
log = logging.getLogger(__name__)


# -- GX context ------------------------------------------------------------------------------
def get_context() -> AbstractDataContext:
    """The process-wide ephemeral GX context (created on first use: imports GX)."""
    global _CONTEXT, _CONTEXT_PID
    with LOCK:
        if _CONTEXT is not None and os.getpid() != _CONTEXT_PID:  # forked from a preloaded parent
            log.debug("great_expectations preloaded: GX context inherited from process %s", _CONTEXT_PID)
            _CONTEXT_PID = os.getpid()
        if _CONTEXT is None:
            preloaded = "great_expectations" in sys.modules
            started = time.perf_counter()
            import great_expectations as gx

            if preloaded:
                log.debug("great_expectations was already imported (preloaded by a parent process)")
            else:  # visible in task logs: a gate task that pays this was not forked from a preloaded parent
                log.info("imported great_expectations in %.1f s (not preloaded; see tally.airflow.preload)",
                         time.perf_counter() - started)
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every pandas batch under 1 GB (md5 over pandas' hash of every value)
            # for a batch marker nothing reads: ~15 % of a raw gate's time at 100k opportunities.
            # A lake partition is identified by its manifest (files, row count, key checksum).
            pandas_execution_engine.HASH_THRESHOLD = 0
            context = gx.get_context(mode="ephemeral")
            # tqdm bars per validation would flood task logs
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            # GX logs this for every Decimal it turns into a float (several times per sum check);
            # the module docstring states how sums are compared, so drop the repetition
            logging.getLogger("great_expectations.util").addFilter(
                lambda record: not record.getMessage().startswith("Using lossy conversion for decimal")
            )
            _CONTEXT, _CONTEXT_PID = context, os.getpid()
        return _CONTEXT



# -- public API ------------------------------------------------------------------------------
def validate_dataframe(
    suite_name: str,
    df: pd.DataFrame,
    parameters: Mapping[str, Any] | None = None,
    suites_dir: Path | None = None,
    *,
    target: str = "dataframe",
    run_name: str | None = None,
    batch: str | None = None,
    key: list[str] | None = None,
    scales: Mapping[str, int] | None = None,
) -> GateResult:
    """Validate an in-memory DataFrame (pandas execution engine).

    ``run_name`` (the ds) and ``batch`` (what the frame is) name its Data Docs page. ``key``
    names the offending rows in the failures' samples (default: the suite's, ``suite_key``);
    ``scales`` are the decimal scales of columns the frame holds as floats."""
    suite_dict = load_suite_dict(suite_name, suites_dir)
    params = check_parameters(suite_dict, parameters)
    key = suite_key(suite_dict) if key is None else list(key)
    suite, result = validate_frame(suite_dict, prepare_frame(df, suite_dict), params, key=key)
    out = from_gx(suite_dict, result, target=target, parameters=params, key=key, scales=scales)
    out.data_docs = publish(result, suite_dict, suite, run_name, batch or target, target)
    return out



def validate_frame(suite_dict: dict, frame: pd.DataFrame, params: dict,
                   key: list[str] | None = None) -> tuple[Any, Any]:
    key = suite_key(suite_dict) if key is None else key
    with LOCK:
        context = get_context()
        suite = build_suite(suite_dict)
        batch_definition = pandas_batch_definition(context)
        return suite, run_suite(batch_definition, suite, params, {"dataframe": frame}, key=key)



def run_suite(batch_definition: Any, suite: Any, params: dict, batch_parameters: dict | None = None,
              key: list[str] | tuple[str, ...] = ()) -> Any:
    """``suite`` on the batch definition's batch, with GX's BASIC results. GX's own
    ``get_batch().validate()`` loads the batch twice (for a DataFrame: hashing every value twice
    for a fingerprint); its validator, given the batch definition, loads it once.

    Two passes: every expectation with counts only (``COUNTS_FORMAT``), then, on the same batch,
    the expectations that counted offending rows once more for their sample of values. The
    results are what one BASIC pass returns; a clean batch skips the sample queries.

    With a ``key``, the sample pass also fetches the offending rows (``ROWS_FORMAT``: one more
    ``LIMIT``-ed query per failed expectation, none for a clean batch), kept in the result as
    ``unexpected_rows``: a list of dicts of the key and the expectation's columns only."""
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(batch_definition, result_format=COUNTS_FORMAT, batch_parameters=batch_parameters)
    result = validator.validate_expectation_suite(suite, expectation_parameters=params)
    offending = [i for i, r in enumerate(result.results) if (r.result or {}).get("unexpected_count")]
    for i in offending:
        expectation = result.results[i].expectation_config.to_domain_obj()
        result.results[i] = _sample(validator, expectation, params, list(key))
    return result


def _sample(validator: Any, expectation: Any, params: dict, key: list[str]) -> Any:
    """One failed expectation again, for its sample: with the offending rows' keys when the
    dataset has a key (an expectation GX cannot return rows for gets its values only)."""
    if key:
        validator.result_format = ROWS_FORMAT
        evr = validator.validate_expectation(expectation, expectation_parameters=params)
        info = evr.exception_info if isinstance(evr.exception_info, dict) else {}
        raised = info.get("raised_exception") or any(  # GX keys a metric's exception by the metric
            isinstance(v, dict) and v.get("raised_exception") for v in info.values())
        if not raised:
            res = evr.result or {}
            if "unexpected_rows" in res:
                res["unexpected_rows"] = key_rows(res["unexpected_rows"], key,
                                                  columns_of(evr.expectation_config.kwargs))
            return evr
    validator.result_format = RESULT_FORMAT
    return validator.validate_expectation(expectation, expectation_parameters=params)


def key_rows(rows: Any, key: list[str], columns: list[str]) -> list[dict] | None:
    """GX's ``unexpected_rows`` (a pandas frame, or dicts from SQL) as plain dicts holding the key
    and the checked columns only, at most ``SAMPLE_SIZE``; ``None`` when a key column is absent."""
    wanted = list(dict.fromkeys([*key, *columns]))
    if rows is None:
        return None
    if hasattr(rows, "to_dict"):  # pandas
        if any(k not in rows.columns for k in key):
            return None
        present = [c for c in wanted if c in rows.columns]
        return [{c: _plain(v) for c, v in r.items()} for r in rows[present].head(SAMPLE_SIZE).to_dict("records")]
    out = []
    for row in list(rows)[:SAMPLE_SIZE]:
        row = dict(row)
        if any(k not in row for k in key):
            return None
        out.append({c: _plain(row[c]) for c in wanted if c in row})
    return out


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (Decimals, strings and dates unchanged)."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return item()
    return value



def publish(result: Any, suite_dict: dict, suite: Any, run_name: str | None, batch: str, asset: str) -> str:
    """Add the validation to the Data Docs site; a site that cannot be written never fails a gate."""
    from tally.quality import docs

    if not docs.enabled():
        return ""
    try:
        return docs.publish(result, suite_dict, suite, run_name=run_name or "adhoc", batch=batch, asset=asset)
    except Exception:
        log.warning("could not update the Data Docs site at %s", docs.docs_dir(), exc_info=True)
        return ""



def warm_up(suites_dir: Path | None = None) -> int:
    """Validate a one-row frame against every suite (results discarded, nothing published) and
    render its Data Docs pages in memory: creates the process's GX context and pandas datasource,
    fills GX's and Python's per-class caches and compiles the Jinja templates, so that processes
    forked afterwards validate at full speed. Returns how many suites were run."""
    import pandas as pd

    from tally.quality import docs
    from tally.quality.suites import list_suites

    done = 0
    for name in list_suites(suites_dir):
        try:  # a broken suite file fails its own gate, loudly; it must not stop the warm-up
            suite_dict = load_suite_dict(name, suites_dir)
            frame = pd.DataFrame({c: pd.Series([None], dtype=object) for c in suite_columns(suite_dict)}
                                 or {"_": [None]})
            params = dict.fromkeys(suite_parameters(suite_dict), 0)
            suite, result = validate_frame(suite_dict, prepare_frame(frame, suite_dict), params)
            if not done:
                docs.warm_up(result, suite)
            done += 1
        except Exception as exc:
            log.warning("warm-up of suite %s skipped: %s", name, exc)
    return done



def check_parameters(suite_dict: dict, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(parameters or {})
    missing = [p for p in suite_parameters(suite_dict) if p not in params]
    if missing:
        raise ValueError(
            f"suite {suite_dict['name']!r} needs parameter(s) {missing}; got {sorted(params)}"
        )
    return params



def prepare_frame(df: pd.DataFrame, suite_dict: dict) -> pd.DataFrame:
    """Work around GX's pandas sum/mean/stdev on ``Decimal`` columns, which converts the column
    of the caller's frame in place (aligned on a 0..n index) and fails on nulls: hand GX a
    float copy of those columns instead. Other columns keep their exact values."""
    cols = {
        c
        for exp in suite_dict["expectations"]
        if exp["type"].startswith(_DECIMAL_AGGREGATES)
        for c in expectation_columns(exp)
        if c in df.columns and df[c].dtype == object
    }
    if not cols:
        return df
    import pandas as pd

    def to_float(value: Any) -> float:
        return math.nan if value is None or value is pd.NA else float(value)

    return df.assign(**{c: df[c].map(to_float).astype("float64") for c in cols})




def pandas_batch_definition(context: AbstractDataContext) -> Any:
    if _PANDAS_DATASOURCE in context.data_sources.all():
        source = context.data_sources.get(_PANDAS_DATASOURCE)
        return source.get_asset("frames").get_batch_definition("whole")
    source = context.data_sources.add_pandas(_PANDAS_DATASOURCE)
    return source.add_dataframe_asset("frames").add_batch_definition_whole_dataframe("whole")


