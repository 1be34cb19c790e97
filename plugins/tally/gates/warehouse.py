"""The warehouse gate: every loaded table's ds slice, counted and checksummed in the database,
equals its manifest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

from tally import catalog, contract
from tally.core.resources import Resources, check_ds, record
from tally.gates.common import store_and_raise
from tally.ledger import Entry
from tally.quality.result import GateResult

# Connections the warehouse gate measures its slices over, concurrently: each measurement is one
# md5 scan, CPU-bound in the server; the biggest slices go first.
WAREHOUSE_GATE_CONNECTIONS = 2


def gate_warehouse(res: Resources, ds: str) -> list[dict]:
    """Every loaded table's ds slice, counted and checksummed in the database, equals its manifest."""
    from concurrent.futures import ThreadPoolExecutor

    from tally.load.warehouse import ensure_ops, measure

    check_ds(ds)
    targets = [(d.dataset_id, d.lake_path, "raw", d.warehouse_table, catalog.snake_case(d.key))
               for d in catalog.all_raw()]
    targets += [(name, f"curated/{name}", "curated", name, catalog.CURATED_KEYS[name]) for name in contract.CURATED]
    manifests = {t[0]: res.lake.read_manifest(t[1], ds) for t in targets}
    todo = [t for t in targets if manifests[t[0]] is not None]
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        ensure_ops(conn)  # the checksum helper (the loader creates it too)
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
        results, entries = [], []
        for dataset_id, _path, schema, table, key in todo:
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
            entries.append(Entry(ds, dataset_id, "warehouse", got.row_count, got.key_checksum, {"table": got.table}))
        record(res, *entries, conn=conn)
        return store_and_raise(res, ds, results, conn)
