"""The quality gate: run an expectation suite on a DataFrame, a lake ds or a Postgres table.

Core code (no Airflow). ``great_expectations`` is imported only inside the functions that
validate (it takes ~9 s), and one ephemeral GX context is created per process and reused.

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
import hashlib
import logging
import math
import threading
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
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
# aggregate metrics whose pandas implementation converts Decimal columns in place (mutating the
# caller's frame) and crashes on a null among Decimals
_DECIMAL_AGGREGATES = ("expect_column_sum_", "expect_column_mean_", "expect_column_stdev_")
_PANDAS_DATASOURCE = "tally_pandas"
_LOCK = threading.RLock()
_CONTEXT: AbstractDataContext | None = None


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
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            # tqdm bars per validation would flood task logs
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            # GX logs this for every Decimal it turns into a float (several times per sum check);
            # the module docstring states how sums are compared, so drop the repetition
            logging.getLogger("great_expectations.util").addFilter(
                lambda record: not record.getMessage().startswith("Using lossy conversion for decimal")
            )
            _CONTEXT = context
        return _CONTEXT


# -- public API ------------------------------------------------------------------------------
def validate_dataframe(
    suite_name: str,
    df: pd.DataFrame,
    parameters: Mapping[str, Any] | None = None,
    suites_dir: Path | None = None,
    *,
    target: str = "dataframe",
) -> GateResult:
    """Validate an in-memory DataFrame (pandas execution engine)."""
    suite_dict = load_suite_dict(suite_name, suites_dir)
    params = _check_parameters(suite_dict, parameters)
    frame = _prepare_frame(df, suite_dict)
    with _LOCK:
        context = get_context()
        suite = build_suite(suite_dict)
        batch_definition = _pandas_batch_definition(context)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=params)
    return _gate_result(suite_dict, result, target=target, parameters=params)


def validate_parquet(
    suite_name: str,
    lake: Lake,
    dataset_path: str,
    ds: str,
    parameters: Mapping[str, Any] | None = None,
    columns: list[str] | None = None,
    suites_dir: Path | None = None,
) -> GateResult:
    """Validate one committed ds of a lake dataset.

    Reads exactly the files the manifest lists and only the columns the suite uses (or
    ``columns``). A column the suite needs but the files lack is not read; GX then reports
    the expectations on it as failed ("column ... does not exist") instead of the gate crashing.
    """
    import pyarrow.parquet as pq

    suite_dict = load_suite_dict(suite_name, suites_dir)
    _check_parameters(suite_dict, parameters)
    files = lake.files(dataset_path, ds)  # FileNotFoundError when the ds is not committed
    wanted = suite_columns(suite_dict) if columns is None else list(columns)
    present = set(pq.read_schema(files[0], filesystem=lake.fs).names) if files else set()
    read = [c for c in wanted if c in present]
    if read:
        frame = lake.read_table(dataset_path, ds, columns=read).to_pandas()
    else:  # table-level checks only: count rows from the footers (a concat of zero-column tables loses them)
        import pandas as pd

        rows = sum(pq.ParquetFile(f, filesystem=lake.fs).metadata.num_rows for f in files)
        frame = pd.DataFrame(index=pd.RangeIndex(rows))
    target = f"{lake.uri}/{lake.partition(dataset_path, ds)} ({len(files)} files, {len(frame)} rows)"
    return validate_dataframe(suite_name, frame, parameters, suites_dir, target=target)


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

    Uses a GX Postgres datasource: every expectation runs as SQL (counts, aggregates, and
    ``LIMIT``-ed queries for the sample of offending values); no rows come back to pandas.
    ``where`` restricts the batch: a mapping (``{"ds": "2024-01-02"}``, rendered as quoted
    equality tests: preferred) or a raw SQL predicate string (trusted input only). The batch is
    a GX query asset ``SELECT * FROM schema.table WHERE ...``, which GX wraps as a subquery.

    Caveat (GX 1.x): to learn a query asset's column names GX runs the bare query once and
    psycopg buffers its rows client-side (not in pandas) before they are dropped: ~270 MB of
    RSS for a 1M-row ds of this mart's shape. Negligible for marts; for very large warehouse
    tables consider ``create_temp_table=True`` on the datasource (a server-side copy instead).
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
        asset_name = "q_" + hashlib.sha256(query.encode()).hexdigest()[:16]
        if asset_name in datasource.get_asset_names():
            datasource.delete_asset(asset_name)
        _probe(datasource, composed)
        asset = datasource.add_query_asset(asset_name, query=query)
        try:
            batch = asset.add_batch_definition_whole_table("whole").get_batch()
            result = batch.validate(suite, result_format=RESULT_FORMAT, expectation_parameters=params)
        finally:
            datasource.delete_asset(asset_name)
    shown = query.split(" FROM ", 1)[1]
    return _gate_result(suite_dict, result, target=f"postgres {shown}", parameters=params)


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


def _pandas_batch_definition(context: AbstractDataContext) -> Any:
    if _PANDAS_DATASOURCE in context.data_sources.all():
        source = context.data_sources.get(_PANDAS_DATASOURCE)
        return source.get_asset("frames").get_batch_definition("whole")
    source = context.data_sources.add_pandas(_PANDAS_DATASOURCE)
    return source.add_dataframe_asset("frames").add_batch_definition_whole_dataframe("whole")


def _postgres_datasource(context: AbstractDataContext, url: str) -> Any:
    name = "tally_pg_" + hashlib.sha256(url.encode()).hexdigest()[:12]
    if name in context.data_sources.all():
        return context.data_sources.get(name)
    return context.data_sources.add_postgres(name, connection_string=url)


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
