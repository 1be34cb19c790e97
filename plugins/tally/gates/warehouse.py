"""The warehouse gate (the *audit* of write–audit–publish, ``tally.load.wap``): every table's
*staged* ds slice (``wap_raw.*``, ``wap_curated.*``), counted and checksummed in the database,
equals its manifest. Its verdict is kept on ``ops.staged``; only a passed gate lets
``tally.load.wap.publish`` publish the ds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

from tally.core.errors import DataProblem
from tally.core.resources import Resources, check_ds, record
from tally.gates.common import store_and_raise
from tally.ledger import Entry
from tally.quality.result import GateResult

# Connections the warehouse gate measures its slices over, concurrently: each measurement is one
# md5 scan, CPU-bound in the server; the biggest slices go first.
WAREHOUSE_GATE_CONNECTIONS = 2


def gate_warehouse(res: Resources, ds: str) -> list[dict]:
    """Every staged table's ds slice, counted and checksummed in the database, equals its manifest;
    ledger: the warehouse hop (the staged slice, which the publish moves as it is)."""
    from concurrent.futures import ThreadPoolExecutor

    from tally.load import wap
    from tally.load.warehouse import ensure_ops, measure

    check_ds(ds)
    targets = [(t.dataset, t.lake_path, wap.staging_schema(t.schema), t.table, t.key, t.published)
               for t in wap.targets()]
    manifests = {t[0]: res.lake.read_manifest(t[1], ds) for t in targets}
    todo = [t for t in targets if manifests[t[0]] is not None]
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure_ops(conn)  # the checksum helper (the loader creates it too)
        if wap.staged(conn, ds) is None:
            last = wap.last_publication(conn, ds)
            raise DataProblem(f"ds={ds}: nothing is staged for the warehouse gate to check ("
                              + (f"published at {last['published_at'].isoformat()} by run {last['run_id']}"
                                 if last else "load_warehouse has not finished") + "): clear load_warehouse and "
                              "its downstream to load and gate it again")
        lock, idle, extra = threading.Lock(), [conn], []

        def measured(target: tuple) -> object:
            with lock:
                use = idle.pop() if idle else None
            if use is None:
                use = psycopg.connect(res.warehouse.conninfo(), autocommit=True)
                extra.append(use)
            try:
                return measure(use, target[2], target[3], target[4], ds)
            finally:
                with lock:
                    idle.append(use)

        biggest_first = sorted(todo, key=lambda t: -manifests[t[0]]["row_count"])
        try:
            with ThreadPoolExecutor(max(1, min(WAREHOUSE_GATE_CONNECTIONS, len(todo)))) as pool:
                got_by = dict(zip((t[0] for t in biggest_first), pool.map(measured, biggest_first), strict=True))
        finally:
            for other in extra:
                other.close()
        results, entries, rows = [], [], {}
        for dataset_id, _path, schema, table, key, published in todo:
            manifest, got = manifests[dataset_id], got_by[dataset_id]
            failures = []
            if got.row_count != manifest["row_count"]:
                failures.append({"expectation": "warehouse_row_count_equals_manifest", "column": None,
                                 "observed": got.row_count, "expected": manifest["row_count"]})
            if got.key_checksum != manifest["key_checksum"]:
                failures.append({"expectation": "warehouse_key_checksum_equals_manifest", "column": key,
                                 "observed": got.key_checksum, "expected": manifest["key_checksum"]})
            results.append(GateResult(
                suite=f"warehouse.{dataset_id}", hop="warehouse", dataset=dataset_id, success=not failures,
                evaluated=2, failed=len(failures), failures=failures, run_at=datetime.now(UTC).isoformat(),
                target=f"{schema}.{table} where _ds = {ds}"))
            entries.append(Entry(ds, dataset_id, "warehouse", got.row_count, got.key_checksum,
                                 {"table": published, "staging": got.table}))
            rows[published] = got.row_count
        wap.mark_gated(conn, ds, all(r.success for r in results), rows)
        record(res, *entries, conn=conn)
        return store_and_raise(res, ds, results, conn)
