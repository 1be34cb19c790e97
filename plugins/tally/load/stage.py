"""The load stage: every raw dataset and curated output of a ds into the warehouse; ledger: warehouse hop."""

from __future__ import annotations

from tally import catalog, contract
from tally.core.errors import DataProblem
from tally.core.resources import Resources, check_ds, record
from tally.ledger import Entry
from tally.load.warehouse import load_partition


def load(res: Resources, ds: str) -> list[dict]:
    """Load every raw dataset and the curated outputs for ds; ledger: the warehouse hop's row
    counts as COPY reports them. The slices' counts and key checksums are measured once, in SQL,
    by the warehouse gate (``tally.gates.warehouse``, which overwrites these entries): measuring
    here too would scan every slice twice."""
    check_ds(ds)
    out, entries = [], []
    for dataset in catalog.all_raw():
        r = load_partition(res.warehouse, res.lake, dataset.lake_path, ds, "raw", dataset.warehouse_table,
                           dataset.key, verify=False)
        entries.append(Entry(ds, dataset.dataset_id, "warehouse", r.row_count, None, {"table": r.table}))
        out.append(r.__dict__)
    for name in contract.CURATED:
        path = f"curated/{name}"
        manifest = res.lake.read_manifest(path, ds)
        if manifest is None:
            raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
        r = load_partition(res.warehouse, res.lake, path, ds, "curated", name, catalog.CURATED_KEYS[name],
                           verify=False)
        entries.append(Entry(ds, name, "warehouse", r.row_count, None, {"table": r.table}))
        out.append(r.__dict__)
    record(res, *entries)
    return out
