"""Validating a committed ds of a lake dataset (Parquet files) in bounded memory: one pandas frame
for a small partition, exact batch-wise validation for a big one."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tally.quality.context import check_parameters, prepare_frame, publish, validate_dataframe, validate_frame
from tally.quality.result import SAMPLE_SIZE, GateResult, columns_of, from_gx
from tally.quality.suites import expectation_columns, load_suite_dict, suite_columns, suite_key

if TYPE_CHECKING:
    import pandas as pd

    from tally.lake import Lake

log = logging.getLogger(__name__)


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

    Reads exactly the files the manifest lists, after checking them against it (``Lake.verify``:
    a ``PartitionMismatch`` when they differ), and only the columns the suite uses (or
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
    params = check_parameters(suite_dict, parameters)
    from tally.lake.verify import check_footers

    # what is validated is what was committed (tally.lake.verify; PartitionMismatch names the
    # difference): the footers before anything is read, the key checksum by the read below;
    # FileNotFoundError when the ds is not committed
    check_footers(lake, dataset_path, ds, lake.committed_manifest(dataset_path, ds))
    files = lake.files(dataset_path, ds)
    wanted = suite_columns(suite_dict) if columns is None else list(columns)
    schema = pq.read_schema(files[0], filesystem=lake.fs) if files else None
    present = set(schema.names) if schema is not None else set()
    scales = decimal_scales(schema)  # money validated as floats is shown at its scale
    key = suite_key(suite_dict)
    read = [c for c in wanted if c in present]
    rows = sum(pq.ParquetFile(f, filesystem=lake.fs).metadata.num_rows for f in files)
    limit = batch_rows or int(os.environ.get(BATCH_ROWS_ENV) or DEFAULT_BATCH_ROWS)
    target = f"{lake.uri}/{lake.partition(dataset_path, ds)} ({len(files)} files, {rows} rows)"
    docs_batch = dataset_path.replace("/", ".")
    if read and rows > limit and _batchable(suite_dict):
        lake.verify(dataset_path, ds)  # the key column alone; the batches below read the files
        suite, result = _validate_parquet_batches(suite_dict, params, lake, files, read, rows, limit)
        out = from_gx(suite_dict, result, target=f"{target}, validated in batches of {limit}",
                      parameters=params, key=key, scales=scales)
        out.data_docs = publish(result, suite_dict, suite, ds, docs_batch, target)
        return out
    if read:
        frame = _to_pandas(lake.read_table(dataset_path, ds, columns=read), suite_dict)  # verified as read
    else:  # table-level checks only: a concat of zero-column tables loses the row count
        lake.verify(dataset_path, ds)
        frame = pd.DataFrame(index=pd.RangeIndex(rows))
    return validate_dataframe(suite_name, frame, parameters, suites_dir, target=target, run_name=ds,
                              batch=docs_batch, key=key, scales=scales)


def decimal_scales(schema: Any) -> dict[str, int]:
    """The scale of every decimal column of an Arrow schema (``amount`` decimal(38,9) -> 9)."""
    import pyarrow as pa

    return {f.name: f.type.scale for f in schema or [] if pa.types.is_decimal(f.type)}



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
            frame = prepare_frame(_to_pandas(batch, suite_dict), suite_dict)
            suite, result = validate_frame(suite_dict, frame, params)
            ordered = _by_expectation(suite_dict, result.results)
            merged = ordered if not merged else [_merge_map(a, b) if kind == "map" else a
                                                 for a, b, kind in zip(merged, ordered, kinds, strict=True)]
    assert suite is not None and result is not None
    table = [e for e, kind in zip(suite_dict["expectations"], kinds, strict=True) if kind == "table"]
    if table:
        _, counted = validate_frame({**suite_dict, "expectations": table}, pd.DataFrame(index=pd.RangeIndex(rows)),
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
        keyed.setdefault((r.expectation_config.type, tuple(columns_of(r.expectation_config.kwargs))), []).append(r)
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
    if isinstance(a.get("unexpected_rows"), list) or isinstance(b.get("unexpected_rows"), list):
        a["unexpected_rows"] = (list(a.get("unexpected_rows") or [])
                                + list(b.get("unexpected_rows") or []))[:SAMPLE_SIZE]
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
    res.pop("unexpected_rows", None)  # a batch's duplicates; the sample above holds the partition's keys
    _set_map_success(evr, res)



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
