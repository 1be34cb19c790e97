"""The load stage: every raw dataset and curated output of a ds into the warehouse's *staging*
tables (``wap_raw.*``, ``wap_curated.*``; ``tally.load.wap``); ledger: warehouse hop. The gate
audits the staged slices, ``tally.load.wap.publish`` publishes them, all tables at once."""

from __future__ import annotations

import psycopg

from tally.core.errors import DataProblem
from tally.core.resources import Resources, check_ds, record
from tally.ledger import Entry
from tally.load import wap
from tally.load.warehouse import ensure_table, load_partition


def load(res: Resources, ds: str) -> list[dict]:
    """Stage every raw dataset and the curated outputs for ds (one transaction per table: staging
    is read by nobody but the gate and the publish); ledger: the warehouse hop's row counts as COPY
    reports them. The published tables are created or altered (new nullable columns) first, by the
    same ``ensure_table``, so a schema change fails here, before anything is staged or published.
    The slices' counts and key checksums are measured once, in SQL, by the warehouse gate
    (``tally.gates.warehouse``, which overwrites these entries): measuring here too would scan
    every slice twice."""
    check_ds(ds)
    with psycopg.connect(res.warehouse.conninfo()) as conn, conn.transaction():
        wap.unstage(conn, ds)  # until every table is staged again, there is nothing to publish
    out, entries, rows = [], [], {}
    for target in wap.targets():
        if target.schema == "curated" and res.lake.read_manifest(target.lake_path, ds) is None:
            raise DataProblem(f"{target.published} ds={ds} is not committed: did the Spark job run?")
        with psycopg.connect(res.warehouse.conninfo()) as conn, conn.transaction():
            ensure_table(conn, target.schema, target.table, res.lake.schema(target.lake_path, ds))
        r = load_partition(res.warehouse, res.lake, target.lake_path, ds, wap.staging_schema(target.schema),
                           target.table, target.key, verify=False)
        entries.append(Entry(ds, target.dataset, "warehouse", r.row_count, None,
                             {"table": target.published, "staging": r.table}))
        rows[target.published] = r.row_count
        out.append({**r.__dict__, "published_table": target.published})
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        wap.mark_staged(conn, ds, res.run_id, rows)
        record(res, *entries, conn=conn)  # one commit: staged, and the ledger says so
    return out
