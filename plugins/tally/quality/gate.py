"""The quality gate: run an expectation suite on a DataFrame, a lake ds or a Postgres table.

Core code (no Airflow). ``great_expectations`` is imported only inside the functions that
validate (it takes ~9 s), and one ephemeral GX context is created per process and reused. In
Airflow, the scheduler imports GX once and warms it up (``tally.quality.preload``) before it
forks the LocalExecutor's workers, so every gate task, forked from a worker, starts with GX
loaded; other processes (DAG parsing, the CLI) pay the import only when they validate.

Every GX validation is also published to the Data Docs site (``tally.quality.docs``); the
result's ``data_docs`` names its page.

A gate never raises because data is bad: it returns a :class:`GateResult` saying what failed,
with observed and expected numbers and up to 10 offending values, and the caller decides
(``result.raise_for_failure()``). It does raise when it cannot run: unknown suite, a
``$PARAMETER`` without a value, an unreachable database.

Numbers: GX compares aggregate expectations (row counts, sums) after converting
``Decimal`` to ``float``, both the observed value and the parameter. Sums of exact money
columns are therefore compared to ~15 significant digits; pass the expected sum as a
``Decimal`` (or its string), never as a float computed by float arithmetic, so both sides
go through the same single rounding.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.quality.suites import (
    build_suite,
    expectation_columns,
    load_suite_dict,
    split_name,
    suite_columns,
    suite_parameters,
)

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.data_context import AbstractDataContext

    from tally.lake import Lake

SAMPLE_SIZE = 10
# BASIC: counts and the first offending values, all a gate reports; SUMMARY would add value counts
# and index lists, ~30 % more GX time per validation for nothing on-call reads
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}
# the same without the sample: GX looks for offending values with one more query per row-level
# expectation even when it counted none, and in SQL that query scans the whole batch to find
# nothing (27 of the mart gate's 43 queries). Suites run with this first; only expectations
# that counted offending rows are run again with RESULT_FORMAT for their sample (_run_suite).
COUNTS_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}
# aggregate metrics whose pandas implementation converts Decimal columns in place (mutating the
# caller's frame) and crashes on a null among Decimals
_DECIMAL_AGGREGATES = ("expect_column_sum_", "expect_column_mean_", "expect_column_stdev_")
_PANDAS_DATASOURCE = "tally_pandas"
_LOCK = threading.RLock()
_CONTEXT: AbstractDataContext | None = None
_CONTEXT_PID = 0
log = logging.getLogger(__name__)


class GateError(RuntimeError):
    """The gate could not run at all (no such table, a ``where`` that does not parse)."""


class QualityGateFailed(RuntimeError):
    """Raised by :meth:`GateResult.raise_for_failure`; carries the result."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.summary())
        self.result = result


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

    @property
    def passed(self) -> int:
        return self.evaluated - self.failed

    def summary(self) -> str:
        """One line for on-call, e.g. ``raw.salesforce.Opportunity: 2/3 passed;
        expect_table_row_count_to_equal observed 998 expected 1000``."""
        head = f"{self.suite}: {self.passed}/{self.evaluated} passed"
        return "; ".join([head, *(describe_failure(f) for f in self.failures)])

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    def raise_for_failure(self) -> GateResult:
        if not self.success:
            raise QualityGateFailed(self)
        return self


# -- GX context ------------------------------------------------------------------------------
def get_context() -> AbstractDataContext:
    """The process-wide ephemeral GX context (created on first use: imports GX)."""
    global _CONTEXT, _CONTEXT_PID
    with _LOCK:
        if _CONTEXT is not None and os.getpid() != _CONTEXT_PID:  # forked from a preloaded parent
            log.info("great_expectations preloaded: GX context inherited from process %s", _CONTEXT_PID)
            _CONTEXT_PID = os.getpid()
        if _CONTEXT is None:
            preloaded = "great_expectations" in sys.modules
            started = time.perf_counter()
            import great_expectations as gx

            if preloaded:
                log.debug("great_expectations was already imported (preloaded by a parent process)")
            else:  # visible in task logs: a gate task that pays this was not forked from a preloaded parent
                log.info("imported great_expectations in %.1f s (not preloaded; see tally.quality.preload)",
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
) -> GateResult:
    """Validate an in-memory DataFrame (pandas execution engine).

    ``run_name`` (the ds) and ``batch`` (what the frame is) name its Data Docs page."""
    suite_dict = load_suite_dict(suite_name, suites_dir)
    params = _check_parameters(suite_dict, parameters)
    suite, result = _validate_frame(suite_dict, _prepare_frame(df, suite_dict), params)
    out = _gate_result(suite_dict, result, target=target, parameters=params)
    out.data_docs = _publish(result, suite_dict, suite, run_name, batch or target, target)
    return out


def _validate_frame(suite_dict: dict, frame: pd.DataFrame, params: dict) -> tuple[Any, Any]:
    with _LOCK:
        context = get_context()
        suite = build_suite(suite_dict)
        batch_definition = _pandas_batch_definition(context)
        return suite, _run_suite(batch_definition, suite, params, {"dataframe": frame})


def _run_suite(batch_definition: Any, suite: Any, params: dict, batch_parameters: dict | None = None) -> Any:
    """``suite`` on the batch definition's batch, with GX's BASIC results. GX's own
    ``get_batch().validate()`` loads the batch twice (for a DataFrame: hashing every value twice
    for a fingerprint); its validator, given the batch definition, loads it once.

    Two passes: every expectation with counts only (``COUNTS_FORMAT``), then, on the same batch,
    the expectations that counted offending rows once more for their sample of values. The
    results are what one BASIC pass returns; a clean batch skips the sample queries."""
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(batch_definition, result_format=COUNTS_FORMAT, batch_parameters=batch_parameters)
    result = validator.validate_expectation_suite(suite, expectation_parameters=params)
    offending = [i for i, r in enumerate(result.results) if (r.result or {}).get("unexpected_count")]
    if offending:
        validator.result_format = RESULT_FORMAT
        for i in offending:
            expectation = result.results[i].expectation_config.to_domain_obj()
            result.results[i] = validator.validate_expectation(expectation, expectation_parameters=params)
    return result


def _publish(result: Any, suite_dict: dict, suite: Any, run_name: str | None, batch: str, asset: str) -> str:
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
            suite, result = _validate_frame(suite_dict, _prepare_frame(frame, suite_dict), params)
            if not done:
                docs.warm_up(result, suite)
            done += 1
        except Exception as exc:
            log.warning("warm-up of suite %s skipped: %s", name, exc)
    return done


def validate_parquet(
    suite_name: str,
    lake: Lake,
    dataset_path: str,
    ds: str,
    parameters: Mapping[str, Any] | None = None,
    columns: list[str] | None = None,
    suites_dir: Path | None = None,
    *,
    batch_rows: int | None = None,
) -> GateResult:
    """Validate one committed ds of a lake dataset, in bounded memory.

    Reads exactly the files the manifest lists and only the columns the suite uses (or
    ``columns``). A column the suite needs but the files lack is not read; GX then reports
    the expectations on it as failed ("column ... does not exist") instead of the gate crashing.

    The row count comes from the Parquet footers. A partition of at most ``batch_rows`` rows
    (``$TALLY_GATE_BATCH_ROWS``, default 250,000) is validated as one pandas frame; a bigger one
    batch-wise, exactly (see :func:`_validate_parquet_batches`): never more than ``batch_rows``
    rows in pandas at once.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    suite_dict = load_suite_dict(suite_name, suites_dir)
    params = _check_parameters(suite_dict, parameters)
    files = lake.files(dataset_path, ds)  # FileNotFoundError when the ds is not committed
    wanted = suite_columns(suite_dict) if columns is None else list(columns)
    present = set(pq.read_schema(files[0], filesystem=lake.fs).names) if files else set()
    read = [c for c in wanted if c in present]
    rows = sum(pq.ParquetFile(f, filesystem=lake.fs).metadata.num_rows for f in files)
    limit = batch_rows or int(os.environ.get(BATCH_ROWS_ENV) or DEFAULT_BATCH_ROWS)
    target = f"{lake.uri}/{lake.partition(dataset_path, ds)} ({len(files)} files, {rows} rows)"
    docs_batch = dataset_path.replace("/", ".")
    if read and rows > limit and _batchable(suite_dict):
        suite, result = _validate_parquet_batches(suite_dict, params, lake, files, read, rows, limit)
        out = _gate_result(suite_dict, result, target=f"{target}, validated in batches of {limit}",
                           parameters=params)
        out.data_docs = _publish(result, suite_dict, suite, ds, docs_batch, target)
        return out
    if read:
        frame = _to_pandas(lake.read_table(dataset_path, ds, columns=read), suite_dict)
    else:  # table-level checks only: a concat of zero-column tables loses the row count
        frame = pd.DataFrame(index=pd.RangeIndex(rows))
    return validate_dataframe(suite_name, frame, parameters, suites_dir, target=target, run_name=ds,
                              batch=docs_batch)


# -- batch-wise validation of big partitions -------------------------------------------------------
BATCH_ROWS_ENV = "TALLY_GATE_BATCH_ROWS"
DEFAULT_BATCH_ROWS = 250_000
_UNIQUE = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def _kind(expectation: dict) -> str:
    """``table`` (no column: evaluated once on the row count), ``unique`` (exact over the whole
    partition with pyarrow), ``map`` (row by row: per-batch counts add up) or ``other``."""
    if not expectation_columns(expectation):
        return "table"
    if expectation["type"] in _UNIQUE:
        return "unique"
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    try:
        impl = get_expectation_impl(expectation["type"])
    except Exception:
        return "other"
    mappable = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
    return "map" if issubclass(impl, mappable) else "other"


def _batchable(suite_dict: dict) -> bool:
    """Whether every expectation can be evaluated batch-wise; a suite with aggregates over a
    column (sums, means...) is validated as one frame instead (and says so in the log)."""
    other = [e["type"] for e in suite_dict["expectations"] if _kind(e) == "other"]
    if other:
        log.warning("suite %s: %s cannot be validated batch-wise; reading the whole partition",
                    suite_dict["name"], ", ".join(sorted(set(other))))
    return not other


def _validate_parquet_batches(suite_dict: dict, params: dict, lake: Lake, files: list[str], read: list[str],
                              rows: int, batch_rows: int) -> tuple[Any, Any]:
    """Validate a big partition exactly, ``batch_rows`` rows at a time, all through GX:

    * row-level ("map") expectations run on each batch; their unexpected/missing/element counts
      are summed and the sample of offending values is the first ``SAMPLE_SIZE`` found;
    * table-level expectations (row counts) run once on a zero-column frame holding the exact
      row count from the Parquet footers;
    * uniqueness needs every key at once: GX checks each batch, then the partition-wide figures
      replace its per-batch ones, computed with pyarrow from the key column(s) alone (Arrow
      strings, ~25 bytes a row; no pandas objects).
    """
    import pandas as pd
    import pyarrow.parquet as pq

    kinds = [_kind(e) for e in suite_dict["expectations"]]
    merged: list[Any] = []
    suite = result = None
    for path in files:
        for batch in pq.ParquetFile(path, filesystem=lake.fs).iter_batches(batch_size=batch_rows, columns=read):
            frame = _prepare_frame(_to_pandas(batch, suite_dict), suite_dict)
            suite, result = _validate_frame(suite_dict, frame, params)
            ordered = _by_expectation(suite_dict, result.results)
            merged = ordered if not merged else [_merge_map(a, b) if kind == "map" else a
                                                 for a, b, kind in zip(merged, ordered, kinds, strict=True)]
    assert suite is not None and result is not None
    table = [e for e, kind in zip(suite_dict["expectations"], kinds, strict=True) if kind == "table"]
    if table:
        _, counted = _validate_frame({**suite_dict, "expectations": table}, pd.DataFrame(index=pd.RangeIndex(rows)),
                                     params)
        table_results = iter(_by_expectation({**suite_dict, "expectations": table}, counted.results))
    for i, kind in enumerate(kinds):
        if kind == "table":
            merged[i] = next(table_results)
        elif kind == "unique":
            _exact_uniqueness(merged[i], lake, files, expectation_columns(suite_dict["expectations"][i]), rows)
    result.results = merged
    result.success = all(r.success for r in merged)
    passed = sum(1 for r in merged if r.success)
    result.statistics.update(evaluated_expectations=len(merged), successful_expectations=passed,
                             unsuccessful_expectations=len(merged) - passed,
                             success_percent=100.0 * passed / len(merged) if merged else None)
    return suite, result


def _by_expectation(suite_dict: dict, results: list[Any]) -> list[Any]:
    """GX's results in the suite file's order (GX may reorder them)."""
    keyed: dict[tuple, list[Any]] = {}
    for r in results:
        keyed.setdefault((r.expectation_config.type, tuple(_columns_of(r.expectation_config.kwargs))), []).append(r)
    return [keyed[(e["type"], tuple(expectation_columns(e)))].pop(0) for e in suite_dict["expectations"]]


def _merge_map(total: Any, part: Any) -> Any:
    """Add one batch's result of a row-level expectation to the running total (in place)."""
    if total.exception_info and total.exception_info.get("raised_exception"):
        return total
    if part.exception_info and part.exception_info.get("raised_exception"):
        return part
    a, b = total.result, part.result
    for key in ("element_count", "unexpected_count", "missing_count"):
        if key in a or key in b:
            a[key] = (a.get(key) or 0) + (b.get(key) or 0)
    a["partial_unexpected_list"] = (list(a.get("partial_unexpected_list") or [])
                                    + list(b.get("partial_unexpected_list") or []))[:SAMPLE_SIZE]
    counts: dict[str, dict] = {}
    for item in [*(a.get("partial_unexpected_counts") or []), *(b.get("partial_unexpected_counts") or [])]:
        key = repr(item.get("value"))
        counts.setdefault(key, {"value": item.get("value"), "count": 0})["count"] += item.get("count", 0)
    if counts:
        a["partial_unexpected_counts"] = sorted(counts.values(), key=lambda c: -c["count"])[:SAMPLE_SIZE]
    _set_map_success(total, a)
    return total


def _set_map_success(evr: Any, res: dict) -> None:
    elements, unexpected = res.get("element_count") or 0, res.get("unexpected_count") or 0
    considered = elements - (res.get("missing_count") or 0)
    res["missing_percent"] = (res.get("missing_count") or 0) / elements * 100 if elements else None
    res["unexpected_percent_total"] = unexpected / elements * 100 if elements else None
    res["unexpected_percent_nonmissing"] = unexpected / considered * 100 if considered else None
    res["unexpected_percent"] = res["unexpected_percent_nonmissing"]
    mostly = evr.expectation_config.kwargs.get("mostly")
    mostly = 1.0 if mostly is None else float(mostly)
    evr.success = True if not considered else (considered - unexpected) / considered >= mostly


def _exact_uniqueness(evr: Any, lake: Lake, files: list[str], cols: list[str], rows: int) -> None:
    """Replace a uniqueness result's per-batch figures with the partition's (pyarrow group-by)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if evr.exception_info and evr.exception_info.get("raised_exception"):
        return
    table = pa.concat_tables([pq.read_table(f, filesystem=lake.fs, columns=cols) for f in files])
    if len(cols) == 1:  # GX ignores nulls in a column-map expectation
        missing = table.column(0).null_count
        table = table.filter(pc.is_valid(table.column(0)))
    else:  # compound (GX's default ignore_row_if): rows where every column is null are ignored
        valid = functools.reduce(pc.or_, [pc.is_valid(table.column(c)) for c in cols])
        missing = table.num_rows - (pc.sum(pc.cast(valid, pa.int64())).as_py() or 0)
        table = table.filter(valid)
    counts = table.group_by(cols).aggregate([([], "count_all")])
    dupes = counts.filter(pc.greater(counts.column("count_all"), 1))
    unexpected = pc.sum(dupes.column("count_all")).as_py() or 0
    sample: list[Any] = []
    for row in dupes.slice(0, SAMPLE_SIZE).to_pylist():
        value = row[cols[0]] if len(cols) == 1 else {c: row[c] for c in cols}
        sample.extend([value] * min(row["count_all"], SAMPLE_SIZE - len(sample)))
        if len(sample) >= SAMPLE_SIZE:
            break
    res = evr.result
    res.update(element_count=rows, missing_count=missing, unexpected_count=unexpected,
               partial_unexpected_list=sample[:SAMPLE_SIZE])
    res.pop("partial_unexpected_counts", None)
    _set_map_success(evr, res)


def validate_postgres_table(
    suite_name: str,
    conninfo: str,
    schema: str,
    table: str,
    parameters: Mapping[str, Any] | None = None,
    where: str | Mapping[str, Any] | None = None,
    suites_dir: Path | None = None,
) -> GateResult:
    """Validate a Postgres table (or the rows of it matching ``where``) inside the database.

    Uses a GX Postgres datasource: every expectation runs as SQL (counts and aggregates, then
    ``LIMIT``-ed queries for the sample of offending values of the expectations that found
    some); no rows come back to pandas. ``where`` restricts the batch: a mapping
    (``{"ds": "2024-01-02"}``, rendered as quoted equality tests: preferred) or a raw SQL
    predicate string (trusted input only). The batch is the table's GX query asset, set to
    ``SELECT * FROM schema.table WHERE ...``, which GX wraps as a subquery.

    Caveat (GX 1.x): to learn a query asset's column names GX runs the bare query once and
    psycopg buffers its rows client-side (not in pandas) before they are dropped: ~270 MB of
    RSS for a 1M-row ds of ``mart_o2r_pipeline``'s shape, and ~0.25 s for its 141k-row ds at
    100k opportunities. Acceptable for marts; for very large warehouse tables consider
    ``create_temp_table=True`` on the datasource (a server-side copy instead).
    """
    suite_dict = load_suite_dict(suite_name, suites_dir)
    params = _check_parameters(suite_dict, parameters)
    url = sqlalchemy_url(conninfo)
    composed = _select_query(schema, table, where)
    query = composed.as_string()
    with _LOCK:
        context = get_context()
        suite = build_suite(suite_dict)
        datasource = _postgres_datasource(context, url)
        _probe(datasource, composed)
        result = _run_suite(_query_batch_definition(datasource, schema, table, query), suite, params)
    shown = query.split(" FROM ", 1)[1]
    out = _gate_result(suite_dict, result, target=f"postgres {shown}", parameters=params)
    run_name = str(where["ds"]) if isinstance(where, Mapping) and where.get("ds") is not None else None
    out.data_docs = _publish(result, suite_dict, suite, run_name, f"{schema}.{table}", f"postgres {shown}")
    return out


# -- helpers ---------------------------------------------------------------------------------
def _check_parameters(suite_dict: dict, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(parameters or {})
    missing = [p for p in suite_parameters(suite_dict) if p not in params]
    if missing:
        raise ValueError(
            f"suite {suite_dict['name']!r} needs parameter(s) {missing}; got {sorted(params)}"
        )
    return params


def _prepare_frame(df: pd.DataFrame, suite_dict: dict) -> pd.DataFrame:
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


# expectations that compare a decimal column's values as numbers (GX turns Decimals into floats for
# them anyway): such a column is cast to float64 by Arrow, not turned into Python Decimals
_NUMERIC_ONLY = ("expect_column_values_to_be_between", "expect_column_values_to_not_be_null",
                 "expect_column_values_to_be_null", "expect_column_sum_", "expect_column_mean_",
                 "expect_column_stdev_", "expect_column_min_", "expect_column_max_", "expect_column_median_")


def _to_pandas(table: Any, suite_dict: dict) -> pd.DataFrame:
    """Arrow to pandas for a suite. A decimal column that only range, null or aggregate checks
    read becomes float64 in Arrow (vectorised, 8 bytes a value) instead of Python ``Decimal``
    objects (~100 bytes and a microsecond each, then converted again by GX)."""
    import pyarrow as pa

    uses: dict[str, list[str]] = {}
    for exp in suite_dict["expectations"]:
        for col in expectation_columns(exp):
            uses.setdefault(col, []).append(exp["type"])
    for i, fld in enumerate(table.schema):
        if pa.types.is_decimal(fld.type) and all(t.startswith(_NUMERIC_ONLY) for t in uses.get(fld.name, ["?"])):
            table = table.set_column(i, fld.name, table.column(i).cast(pa.float64()))
    return table.to_pandas()


def _probe(datasource: Any, query: Any) -> None:
    """Fail fast, once, when the batch cannot be read at all (no such table, bad ``where``):
    that is a broken pipeline, not bad data, and GX would report it once per expectation."""
    import sqlalchemy as sa
    from psycopg import sql

    probe = sql.SQL("SELECT * FROM ({}) AS probe LIMIT 0").format(query).as_string()
    with datasource.get_engine().connect() as conn:
        try:
            conn.execute(sa.text(probe))
        except sa.exc.DBAPIError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            shown = query.as_string().split(" FROM ", 1)[1]
            raise GateError(f"cannot validate {shown}: {first}") from exc


def _query_batch_definition(datasource: Any, schema: str, table: str, query: str) -> Any:
    """The whole-batch definition of the process's query asset for ``schema.table``, set to
    ``query``. One asset per table, re-pointed in memory: adding and deleting an asset per
    validation rewrote the context's whole configuration as YAML each time (13 times a mart
    gate, 0.16 s)."""
    name = "t_" + hashlib.sha256(f"{schema}.{table}".encode()).hexdigest()[:16]
    if name in datasource.get_asset_names():
        asset = datasource.get_asset(name)
        asset.query = query
        return asset.get_batch_definition("whole")
    return datasource.add_query_asset(name, query=query).add_batch_definition_whole_table("whole")


def _pandas_batch_definition(context: AbstractDataContext) -> Any:
    if _PANDAS_DATASOURCE in context.data_sources.all():
        source = context.data_sources.get(_PANDAS_DATASOURCE)
        return source.get_asset("frames").get_batch_definition("whole")
    source = context.data_sources.add_pandas(_PANDAS_DATASOURCE)
    return source.add_dataframe_asset("frames").add_batch_definition_whole_dataframe("whole")


# The gate's own sessions hash a whole ds slice (uniqueness checks group and join it): at Postgres'
# default 4 MB of work_mem, a mart_o2r_pipeline slice of 141k rows spilled to disk in 5 batches.
_ENGINE_KWARGS = {"connect_args": {"options": "-c work_mem=64MB"}}
_ENGINE_PIDS: dict[str, int] = {}  # datasource name -> the process that connected it


def _postgres_datasource(context: AbstractDataContext, url: str) -> Any:
    """The context's datasource for ``url``. In a process forked after it connected (a gate's
    worker, ``tally.quality.parallel``), its pooled connections are the parent's: they are
    forgotten, not closed, and the child opens its own."""
    name = "tally_pg_" + hashlib.sha256(url.encode()).hexdigest()[:12]
    if name not in context.data_sources.all():
        _ENGINE_PIDS[name] = os.getpid()
        return context.data_sources.add_postgres(name, connection_string=url, kwargs=_ENGINE_KWARGS)
    datasource = context.data_sources.get(name)
    if _ENGINE_PIDS.get(name) != os.getpid():  # the datasource's engine and its execution engine's own
        for engine in (datasource.get_engine(), datasource.get_execution_engine().engine):
            engine.dispose(close=False)
        _ENGINE_PIDS[name] = os.getpid()
    return datasource


def sqlalchemy_url(conninfo: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL from a libpq conninfo (``host=… dbname=…``)
    or URI (``postgresql://…``); a SQLAlchemy URL with a driver is returned unchanged."""
    import getpass

    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    if conninfo.split("://", 1)[0].startswith("postgresql+"):
        return conninfo
    parts = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    url = URL.create(
        "postgresql+psycopg",
        username=parts.pop("user", None) or getpass.getuser(),
        password=parts.pop("password", None),
        host=parts.pop("host", None) or "127.0.0.1",
        port=int(parts.pop("port")) if parts.get("port") else None,
        database=parts.pop("dbname", None),
        query=parts,
    )
    return url.render_as_string(hide_password=False)


def _select_query(schema: str, table: str, where: str | Mapping[str, Any] | None) -> Any:
    """``SELECT * FROM schema.table [WHERE ...]`` as a psycopg ``Composed`` (quoted identifiers and literals)."""
    from psycopg import sql

    query = sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    if isinstance(where, Mapping) and where:
        tests = [
            sql.SQL("{} IS NULL").format(sql.Identifier(k)) if v is None
            else sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v))
            for k, v in where.items()
        ]
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(tests))
    elif isinstance(where, str) and where.strip():
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(where))  # trusted predicate
    return query


def _gate_result(suite_dict: dict, result: Any, *, target: str, parameters: dict) -> GateResult:
    name = suite_dict["name"]
    hop, dataset = split_name(name)
    order = {(e["type"], tuple(expectation_columns(e))): i for i, e in enumerate(suite_dict["expectations"])}

    def position(r: Any) -> int:
        cfg = r.expectation_config
        return order.get((cfg.type, tuple(_columns_of(cfg.kwargs))), len(order))

    results = sorted(result.results, key=position)
    failures = [_failure(r) for r in results if not r.success]
    return GateResult(
        suite=name,
        hop=hop,
        dataset=dataset,
        success=bool(result.success),
        evaluated=len(results),
        failed=len(failures),
        failures=failures,
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        target=target,
        parameters=_jsonable(parameters),
    )


def _columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    return expectation_columns({"kwargs": dict(kwargs)})


def _failure(r: Any) -> dict:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs)
    res = dict(r.result or {})
    cols = _columns_of(kwargs)
    failure: dict[str, Any] = {
        "expectation": cfg.type,
        "column": kwargs["column_list"] if "column_list" in kwargs else (cols[0] if len(cols) == 1 else cols or None),
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
            sample=list(res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
        )
    else:
        failure.update(observed=res.get("observed_value"), expected=_expected(cfg.type, kwargs), sample=[])
    if cfg.meta and cfg.meta.get("notes"):
        failure["note"] = cfg.meta["notes"]
    return _jsonable(failure)


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


def _condition(kind: str, kwargs: dict) -> str:
    if "value_set" in kwargs:
        values = sorted(map(str, kwargs["value_set"]))
        return ("not in " if "not_be_in" in kind else "in ") + "{" + ", ".join(values) + "}"
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
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
        text = (f"{head} observed {f['unexpected_count']} of {f.get('element_count')} rows unexpected"
                f" expected {f['expected']}")
        if f.get("sample"):
            text += ", e.g. " + ", ".join(repr(s) for s in f["sample"][:5])
        return text
    expected = f["expected"]
    if isinstance(expected, dict) and set(expected) == {"min", "max"}:
        lo, hi = expected["min"], expected["max"]
        expected = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f">= {lo}" if lo is not None else f"<= {hi}")
    return f"{head} observed {f['observed']} expected {expected}"


def _jsonable(value: Any) -> Any:
    """Plain JSON types: Decimal -> str (exact), numpy -> Python, dates -> ISO, NaN -> None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
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
            return _jsonable(item())
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
