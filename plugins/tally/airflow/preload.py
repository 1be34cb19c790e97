"""Load Great Expectations once in a long-lived parent so the gate tasks forked from it don't pay for it.

``import great_expectations`` takes ~9 s (it pulls in pandas, scipy, SQLAlchemy, altair and
pyspark's ML modules); a gate's validation takes 0.05-0.5 s. Airflow 3's LocalExecutor forks its
worker processes from the scheduler when the executor starts, and each worker's supervisor
forks a task process per task (bare ``os.fork`` on Linux): whatever the scheduler imported
before that is already in every task process, for free (copy-on-write pages; the executor
``gc.freeze()``s before forking, so they stay shared).

So the embedded stack starts the scheduler as ``python -m tally.airflow.preload scheduler``
(see ``tally_local.stack.airflow.command``): :func:`preload` imports GX and what the gates use, runs
:func:`tally.quality.context.warm_up` (every suite on a one-row frame, Data Docs templates
compiled, nothing written), then hands over to Airflow's own CLI with the remaining arguments.

* DAG parsing (the dag-processor) and the api-server/triggerer are not touched: GX stays out
  of DAG parsing. Non-gate tasks carry the modules in memory but never run them.
* A failed preload only logs a warning: gates then import GX themselves (slower, still correct).
  The gate logs "imported great_expectations in N s (not preloaded)" when that happens.
* Production: run the scheduler (LocalExecutor) or the Celery worker (it forks its pool from
  the main process too) the same way: ``python -m tally.airflow.preload celery worker``.
  Executors that start a fresh interpreter per task (Kubernetes) cannot inherit; there the
  task pays the import.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("tally.airflow.preload")

# Imported lazily by a gate's first validation; loaded here so forked tasks never pay for them.
MODULES = (
    "great_expectations",
    "great_expectations.core",
    "great_expectations.core.run_identifier",
    "great_expectations.expectations.expectation_configuration",
    "great_expectations.datasource.fluent.pandas_datasource",
    "great_expectations.datasource.fluent.sql_datasource",
    "great_expectations.render.renderer",
    "great_expectations.render.renderer.site_index_page_renderer",
    "great_expectations.render.view",
    "sqlalchemy.dialects.postgresql.psycopg",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.compute",
    "psycopg",
    # Tally's own modules every task imports (cheap, but forked tasks then skip even that)
    "tally.gates.raw",
    "tally.gates.curated",
    "tally.gates.warehouse",
    "tally.gates.mart",
    "tally.quality.parquet",
    "tally.quality.postgres",
    "tally.ledger.validation_log",
)


def preload(warm: bool = True) -> float:
    """Import GX and the gate's modules, then (``warm``) warm them up; returns the seconds spent."""
    started = time.perf_counter()
    import importlib

    for name in MODULES:
        importlib.import_module(name)
    # tqdm (used by GX even with progress bars off) starts a monitor thread on first use; a
    # process that forks must not have stray threads.
    import tqdm

    tqdm.tqdm.monitor_interval = 0
    if warm:
        from tally.quality.context import warm_up

        warm_up()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """``python -m tally.airflow.preload <airflow arguments>``: preload, then run Airflow's CLI."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        spent = preload()
        print(f"tally: great_expectations preloaded and warmed up in {spent:.1f} s", file=sys.stderr, flush=True)
    except Exception as exc:  # never keep the scheduler from starting
        print(f"tally: could not preload great_expectations ({type(exc).__name__}: {exc}); gate tasks will "
              "import it themselves", file=sys.stderr, flush=True)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *args]
    sys.exit(airflow_main())


if __name__ == "__main__":
    main()
