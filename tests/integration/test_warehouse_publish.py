"""Write–audit–publish in the warehouse (issue 16, item 2): a ds is loaded into staging, gated
there, and published for all its tables in one transaction. A load killed between two tables, a
failed gate or a failed publish leaves the published tables exactly as they were.

The lake here is synthetic (two small versions, A and B, of every table's ds partition): the
point is which version the published tables show, not Spark's or the sources' work."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pytest

from tally.core.errors import DataProblem
from tally.core.resources import Resources
from tally.lake import Manifest, PartitionWriter
from tally.lake.checksum import checksum

pytestmark = pytest.mark.integration

DS = "2026-04-30"


def _targets():
    """(lake path, published schema, table, key column as landed, key column in the warehouse)."""
    from tally import catalog, contract

    out = [(d.lake_path, "raw", d.warehouse_table, d.key, catalog.snake_case(d.key)) for d in catalog.all_raw()]
    out += [(f"curated/{n}", "curated", n, catalog.CURATED_KEYS[n], catalog.CURATED_KEYS[n]) for n in contract.CURATED]
    return out


def land(lake, version: str, rows: int) -> dict[str, tuple[int, str]]:
    """Commit version ``version`` of every table's ds partition; (rows, key checksum) per table."""
    want = {}
    for path, schema, table, key, _col in _targets():
        keys = [f"{version}-{table}-{i}" for i in range(rows)]
        data = pa.table({key: pa.array(keys, pa.string()), "amount": pa.array(range(rows), pa.int64())})
        writer = PartitionWriter(lake, path, DS)
        writer.commit(Manifest(files=writer.write(data.schema, data.to_batches()), row_count=rows,
                               key_checksum=checksum(keys), key=key))
        want[f"{schema}.{table}"] = (rows, checksum(keys))
    return want


def published(warehouse) -> dict[str, tuple[int, str] | None]:
    """Rows and key checksum of every published table's ds slice (None: no such table)."""
    from tally.load.warehouse import ensure_ops, measure

    out = {}
    with psycopg.connect(warehouse.conninfo()) as conn:
        ensure_ops(conn)
        for _path, schema, table, _key, col in _targets():
            if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0] is None:
                out[f"{schema}.{table}"] = None
                continue
            r = measure(conn, schema, table, col, DS)
            out[f"{schema}.{table}"] = (r.row_count, r.key_checksum) if r.row_count else None
    return out


def publish_directly(lake, warehouse) -> None:
    """Version A in the published tables the way any earlier Tally had it (COPY per table)."""
    from tally.load.warehouse import load_partition

    for path, schema, table, _key, col in _targets():
        load_partition(warehouse, lake, path, DS, schema, table, col)


@pytest.fixture
def res(lake, warehouse_conn) -> Resources:
    return Resources(lake=lake, warehouse=warehouse_conn, run_id="manual__test")


def test_a_load_killed_between_two_tables_leaves_no_mixed_ds_published(res, monkeypatch):
    """Issue 16: the loader's connection killed mid-load left 3 tables with the new slice and 1
    without. Now the load writes staging only: the published ds stays version A, whole."""
    from tally.load import stage

    a = land(res.lake, "a", 3)
    publish_directly(res.lake, res.warehouse)
    assert published(res.warehouse) == a
    b = land(res.lake, "b", 5)
    original, calls = stage.load_partition, []

    def killed_on_the_third_table(*args, **kwargs):
        calls.append(args[5])
        if len(calls) == 3:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, "load_partition", killed_on_the_third_table)
    with pytest.raises(psycopg.OperationalError):
        stage.load(res, DS)
    assert len(calls) == 3
    assert published(res.warehouse) == a  # every table: the old slice, none half-switched

    from tally.gates.warehouse import gate_warehouse
    from tally.load import wap

    with pytest.raises(DataProblem, match="nothing is staged"):  # the half load is not gated …
        gate_warehouse(res, DS)
    with pytest.raises(DataProblem, match="nothing staged and never published"):  # … nor published
        wap.publish(res, DS)
    monkeypatch.setattr(stage, "load_partition", original)  # the retry
    stage.load(res, DS)
    assert published(res.warehouse) == a
    gate_warehouse(res, DS)
    assert wap.publish(res, DS)["published"] is True
    assert published(res.warehouse) == b


def test_a_failed_warehouse_gate_leaves_the_published_slice_as_it_was(res, monkeypatch):
    """Rows lost in the load (3 of one table): the gate fails, and what analysts and dbt read is
    still the previous, checked version of the ds; the publish refuses; a fixed load publishes."""
    from tally.gates.warehouse import gate_warehouse
    from tally.load import stage

    a = land(res.lake, "a", 3)
    publish_directly(res.lake, res.warehouse)
    b = land(res.lake, "b", 5)
    original = stage.load_partition

    def loses_rows_of_opportunities(conn_info, lake, path, ds, schema, table, key, **kwargs):
        result = original(conn_info, lake, path, ds, schema, table, key, **kwargs)
        if table == "sf_opportunity":
            with psycopg.connect(conn_info.conninfo()) as conn:
                conn.execute(f'DELETE FROM {schema}.sf_opportunity WHERE ctid IN (SELECT ctid FROM '  # noqa: S608
                             f'{schema}.sf_opportunity WHERE _ds = %s LIMIT 3)', (ds,))
        return result

    monkeypatch.setattr(stage, "load_partition", loses_rows_of_opportunities)
    stage.load(res, DS)
    with pytest.raises(DataProblem, match="warehouse_row_count_equals_manifest observed 2 expected 5"):
        gate_warehouse(res, DS)
    assert published(res.warehouse) == a  # nothing published, not even the tables that passed

    from tally.load import wap

    with pytest.raises(DataProblem, match="staged but not published: the gate failed"):
        wap.publish(res, DS)
    assert published(res.warehouse) == a
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM ops.publications").fetchone()[0] == 0
    monkeypatch.setattr(stage, "load_partition", original)  # heal: clear load_warehouse and downstream
    stage.load(res, DS)
    gate_warehouse(res, DS)
    wap.publish(res, DS)
    assert published(res.warehouse) == b


def test_publish_switches_every_table_in_one_transaction_and_is_idempotent(res, monkeypatch):
    from tally import ledger
    from tally.gates.warehouse import gate_warehouse
    from tally.load import stage, wap

    a = land(res.lake, "a", 3)
    stage.load(res, DS)
    assert set(published(res.warehouse).values()) == {None}  # staged only
    gate_warehouse(res, DS)
    first = wap.publish(res, DS)
    assert first["published"] is True and first["rows"] == 3 * len(a)
    assert published(res.warehouse) == a
    b = land(res.lake, "b", 5)
    stage.load(res, DS)
    gate_warehouse(res, DS)

    # A reader outside the transaction sees version A until the publish commits, every table at once.
    original, seen = wap.ReplaceDs.publish, []

    def watched(self, conn, target, ds):
        rows = original(self, conn, target, ds)
        seen.append(published(res.warehouse))
        if len(seen) == 4:
            raise psycopg.OperationalError("connection killed mid-publish")
        return rows

    monkeypatch.setattr(wap.ReplaceDs, "publish", watched)
    with pytest.raises(psycopg.OperationalError):
        wap.publish(res, DS)
    assert all(view == a for view in seen)
    assert published(res.warehouse) == a  # rolled back: no table switched
    monkeypatch.setattr(wap.ReplaceDs, "publish", original)
    second = wap.publish(res, DS)
    assert second["published"] is True and published(res.warehouse) == b

    again = wap.publish(res, DS)  # a re-run (cleared task): nothing staged, nothing changes
    assert again["published"] is False and again["by_run"] == "manual__test"
    assert published(res.warehouse) == b
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        pubs = conn.execute("SELECT ds::text, run_id, rows, cardinality(tables) FROM ops.publications"
                            " ORDER BY id").fetchall()
        leftover = sum(conn.execute(f"SELECT count(*) FROM wap_{name}").fetchone()[0]  # noqa: S608
                       for name in b)
        opp = ledger.flow(conn, DS)["salesforce.Opportunity"]["warehouse"]
        assert wap.state(conn, DS)["staged"] is False
    assert pubs == [(DS, "manual__test", 3 * len(a), len(a)), (DS, "manual__test", 5 * len(b), len(b))]
    assert leftover == 0  # staging cleared
    # the ledger's warehouse hop: the gated rows, stamped with their publication
    assert (opp.row_count, opp.key_checksum) == b["raw.sf_opportunity"]
    assert opp.details["table"] == "raw.sf_opportunity" and opp.details["published_at"]


def test_a_schema_change_fails_the_load_and_nothing_is_left_to_publish(res):
    from tally.load import stage, wap
    from tally.load.warehouse import SchemaChangeError

    land(res.lake, "a", 3)
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.erp_customers (customer_id text, amount text, _ds date NOT NULL)")
    with pytest.raises(SchemaChangeError, match="amount: warehouse text, incoming bigint"):
        stage.load(res, DS)
    with psycopg.connect(res.warehouse.conninfo()) as conn:
        assert wap.state(conn, DS)["staged"] is False
