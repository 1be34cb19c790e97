"""Extract from the real simulator and ERP database, land in a lake (local and S3 over HTTP),
load into Postgres: counts and key checksums must agree with the ground truth at every hop."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tally import catalog, sfid
from tally.core.dates import ds_interval
from tally.lake.checksum import PG_BYTEA_TO_BIGINT, checksum, key_hash, postgres_sql
from tally.load.warehouse import SchemaChangeError, ensure_ops, load_partition
from tally.sources.erp.extract import ErpOptions
from tally.stages.extract import expected_raw_rows, extract
from tally_local import generator
from tally_local.seed import seed_erp, seed_salesforce

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
DS = "2026-04-30"


@pytest.fixture(scope="module")
def seeded(stack):
    data = generator.generate(generator.Scale(accounts=40, opportunities=300, users=6, days=6), seed=5, as_of=AS_OF)
    seed_salesforce(stack.state["sfsim"]["db"], data)
    seed_erp(stack.postgres("erp"), data)
    return data


def _resources(stack, lake, warehouse_conn):
    res = stack.resources()
    res.lake = lake
    res.warehouse = warehouse_conn
    return res


@pytest.mark.parametrize("lake_kind", ["local", "s3"])
def test_full_then_incremental_extract_matches_ground_truth(stack, seeded, lake, s3_lake, warehouse_conn, lake_kind):
    target = lake if lake_kind == "local" else s3_lake
    res = _resources(stack, target, warehouse_conn)
    start, end = ds_interval(DS)
    landed = {}
    for dataset in catalog.all_raw():
        # ERP truth: the rows that land (rows the ERP holds but cannot be typed are quarantined,
        # and the manifest's source_count counts them: expected_raw_rows reconciles the two).
        truth = (seeded.salesforce if dataset.source == "salesforce" else seeded.erp)[dataset.name]
        # First ds of a dataset: a full initial load of everything before the interval end.
        first = extract(res, dataset.dataset_id, "2026-04-29", start - timedelta(days=1), start)
        before = [r for r in truth if r[dataset.cursor] < start]
        assert first["mode"] == "full"
        assert first["row_count"] == expected_raw_rows(first) == len(before)
        # Next ds: only what changed inside [start - overlap, end), tie-safe at the edges (ERP
        # dimensions configured for a full reload land whole again).
        second = extract(res, dataset.dataset_id, DS, start, end)
        full = dataset.extra.get("full_reload", False)
        lo = start - (ErpOptions.from_env().overlap if dataset.source == "erp" else timedelta(0))
        inside = [r for r in truth if (full or lo <= r[dataset.cursor]) and r[dataset.cursor] < end]
        assert second["mode"] == ("full" if full else "incremental")
        assert second["row_count"] == expected_raw_rows(second) == len(inside)
        assert second["key_checksum"] == checksum(r[dataset.key] for r in inside)
        landed[dataset.dataset_id] = first["row_count"] + second["row_count"]
    # Loading both slices gives every record in the warehouse, exactly what landed.
    for dataset in catalog.all_raw():
        truth = (seeded.salesforce if dataset.source == "salesforce" else seeded.erp)[dataset.name]
        for ds in ("2026-04-29", DS):
            load_partition(warehouse_conn, target, dataset.lake_path, ds, "raw", dataset.warehouse_table, dataset.key)
        with psycopg.connect(warehouse_conn.conninfo()) as conn:
            n = conn.execute(f'SELECT count(DISTINCT {catalog.snake_case(dataset.key)}), count(*) FROM raw."{dataset.warehouse_table}"').fetchone()
        assert n == (len(truth), landed[dataset.dataset_id]), dataset.dataset_id


def test_ids_are_18_chars_and_money_exact_after_landing(stack, seeded, lake, warehouse_conn):
    res = _resources(stack, lake, warehouse_conn)
    start, end = ds_interval(DS)
    extract(res, "salesforce.Opportunity", DS, start, end)  # full load (first ds)
    table = lake.read_table("raw/salesforce/Opportunity", DS).to_pylist()
    truth = {o["Id"]: o for o in seeded.salesforce["Opportunity"]}
    assert len(table) == len(truth)
    for row in table:
        assert len(row["Id"]) == 18 and sfid.to18(row["Id"]) == row["Id"]
        assert row["Amount"] == truth[row["Id"]]["Amount"]
        assert row["IsDeleted"] == truth[row["Id"]]["IsDeleted"]  # tombstones land too


def test_load_is_idempotent_and_checksums_agree_with_python(stack, seeded, lake, warehouse_conn):
    res = _resources(stack, lake, warehouse_conn)
    start, end = ds_interval(DS)
    manifest = extract(res, "erp.sales_orders", DS, start, end)
    d = catalog.ERP["sales_orders"]
    first = load_partition(warehouse_conn, lake, d.lake_path, DS, "raw", d.warehouse_table, d.key)
    again = load_partition(warehouse_conn, lake, d.lake_path, DS, "raw", d.warehouse_table, d.key)
    assert first.row_count == again.row_count == manifest["row_count"] == len(seeded.erp["sales_orders"])
    assert first.key_checksum == again.key_checksum == manifest["key_checksum"]
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        total = conn.execute("SELECT sum(total_amount) FROM raw.erp_sales_orders").fetchone()[0]
    assert total == sum(o["total_amount"] for o in seeded.erp["sales_orders"])


@pytest.mark.parametrize("server_version", [0, PG_BYTEA_TO_BIGINT], ids=["bit64-cast", "bytea-cast"])
def test_postgres_checksum_forms_equal_python(warehouse_conn, server_version):
    """Both SQL forms (any Postgres; 18's bytea cast) give Python's checksum, hashes with the top
    bit set (negative as signed bigint) and a duplicated key included."""
    keys = [f"key-{i}" for i in range(2000)] + ["key-7", "006AB0000012345AAA", ""]
    assert any(key_hash(k) >= 2**63 for k in keys) and any(key_hash(k) < 2**63 for k in keys)
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        if server_version > conn.info.server_version:
            pytest.skip(f"this Postgres ({conn.info.server_version}) has no bytea-to-bigint cast")
        ensure_ops(conn)
        got = conn.execute(f"SELECT {postgres_sql('k', server_version)} FROM unnest(%s::text[]) AS k",  # noqa: S608
                           (keys,)).fetchone()[0]
    assert got == checksum(keys)


def test_load_preserves_every_type_exactly_and_adds_new_nullable_columns(stack, lake, warehouse_conn):
    """Whatever the lake holds comes back from Postgres as the same Python values."""
    import pyarrow as pa

    from tally.lake import Manifest, PartitionWriter

    rows = {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "amount": pa.array([Decimal("0.000000001"), Decimal("-12345678901234567890.123456789"), None,
                            Decimal("0")], pa.decimal128(38, 9)),
        "ratio": pa.array([1 / 3, 1e-300, None, -0.0], pa.float64()),
        "note": pa.array(["", None, 'a,"b"\nc', "ünï"], pa.string()),
        "on": pa.array([date(2026, 3, 29), None, date(1999, 12, 31), date(2026, 10, 25)], pa.date32()),
        # a DST change in Europe, microseconds, and a value far from now: the load session is UTC
        "at": pa.array([datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=UTC), None,
                        datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 10, 25, 2, 59, 59, 999999, tzinfo=UTC)],
                       pa.timestamp("us", tz="UTC")),
        "ok": pa.array([True, False, None, True]),
    }

    def land(table: pa.Table) -> None:
        writer = PartitionWriter(lake, "raw/test/types", DS)
        writer.commit(Manifest(files=writer.write(table.schema, table.to_batches()), row_count=table.num_rows))

    table = pa.table(rows)
    land(table)
    result = load_partition(warehouse_conn, lake, "raw/test/types", DS, "raw", "types", "id")
    assert result.row_count == 4
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        conn.execute("SET TimeZone TO 'America/New_York'")  # the reader's zone must not matter
        got = conn.execute('SELECT id, amount, ratio, note, "on", at, ok FROM raw.types ORDER BY id').fetchall()
    assert [dict(zip(rows, r, strict=True)) for r in got] == table.to_pylist()

    land(table.append_column("added", pa.array(["x", None, "y", None])))  # a new nullable column
    load_partition(warehouse_conn, lake, "raw/test/types", DS, "raw", "types", "id")
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        assert conn.execute("SELECT added FROM raw.types ORDER BY id").fetchall() == [("x",), (None,), ("y",), (None,)]


def test_retyped_column_fails_the_load_clearly(stack, seeded, lake, warehouse_conn):
    res = _resources(stack, lake, warehouse_conn)
    start, end = ds_interval(DS)
    extract(res, "erp.customers", DS, start, end)
    d = catalog.ERP["customers"]
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.erp_customers (customer_id text, _ds date NOT NULL, _loaded_at timestamptz NOT NULL DEFAULT now())")
    with pytest.raises(SchemaChangeError, match="customer_id: warehouse text, incoming bigint"):
        load_partition(warehouse_conn, lake, d.lake_path, DS, "raw", d.warehouse_table, d.key)


def test_ledger_records_source_and_raw_hops(stack, seeded, lake, warehouse_conn):
    from tally import ledger

    res = _resources(stack, lake, warehouse_conn)
    start, end = ds_interval(DS)
    extract(res, "salesforce.User", DS, start, end)
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        flow = ledger.flow(conn, DS)["salesforce.User"]
    assert flow["source"].row_count == flow["raw"].row_count == len(seeded.salesforce["User"])
    assert ledger.first_divergence(flow) is None


def test_wrong_salesforce_password_is_a_clear_error(stack, lake, warehouse_conn):
    from dataclasses import replace

    from tally.sources.salesforce.auth import SalesforceAuthError

    res = _resources(stack, lake, warehouse_conn)
    res.salesforce = replace(res.salesforce, password="wrong")
    start, end = ds_interval(DS)
    with pytest.raises(SalesforceAuthError, match="INVALID_LOGIN") as info:
        extract(res, "salesforce.User", DS, start, end)
    assert "wrong" not in str(info.value)
    assert lake.committed("raw/salesforce/User") == []  # nothing half-committed


def test_cli_extract_salesforce_lands_an_interval(stack, seeded, tmp_path):
    from typer.testing import CliRunner

    from tally.cli import app
    from tally.lake import Lake

    lake_dir = tmp_path / "cli-lake"
    result = CliRunner().invoke(app, ["extract", "salesforce", "--object", "Opportunity", "--start", "2026-04-30",
                                      "--end", "2026-05-01", "--lake", str(lake_dir)],
                                env={"TALLY_HOME": str(stack.home), "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "row_count" in result.output
    rows = Lake(str(lake_dir)).read_table("raw/salesforce/Opportunity", "2026-04-30").num_rows
    assert rows == sum(1 for o in seeded.salesforce["Opportunity"] if o["SystemModstamp"] < AS_OF)


def _partition_state(lake, dataset_path: str, ds: str) -> tuple[bytes, list[str]]:
    """The committed manifest's bytes and the partition's file names (a rewrite changes both)."""
    folder = Path(lake.path(lake.partition(dataset_path, ds)))
    return (folder / "_manifest.json").read_bytes(), sorted(p.name for p in folder.iterdir())


def test_cli_extract_lands_in_a_scratch_lake_and_replaces_the_partition_only_with_replace(
        stack, seeded, warehouse_conn, tmp_path):
    """Issue 15: the runbook's ad-hoc extract overwrote the committed raw partition (and its ledger
    hops), making the warehouse gate fail. Now it lands in a scratch lake unless --replace."""
    from dataclasses import replace

    from typer.testing import CliRunner

    from tally import ledger
    from tally.cli import app
    from tally.core import profile
    from tally.lake import Lake

    d = catalog.SALESFORCE["Opportunity"]
    real = Lake(str(tmp_path / "lake"))
    res = _resources(stack, real, warehouse_conn)
    start, end = ds_interval(DS)
    extract(res, d.dataset_id, "2026-04-29", start - timedelta(days=1), start)  # an earlier ds: incremental next
    committed = extract(res, d.dataset_id, DS, start, end)
    home = tmp_path / "home"
    profile.write(replace(profile.load(stack.home / "profile.json"), lake=real.uri, warehouse=warehouse_conn),
                  home / "profile.json")
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        conn.execute("DELETE FROM ops.ledger WHERE ds = %s", (DS,))
    before = _partition_state(real, d.lake_path, DS)
    env = {"TALLY_HOME": str(home), "TALLY_PROFILE": None, "COLUMNS": "200"}
    argv = ["extract", "salesforce", "--object", "Opportunity", "--start", DS, "--end", "2026-05-01"]
    runner = CliRunner()

    # Default: a new scratch lake under $TALLY_HOME/scratch/, incremental like the DAG's, and said so.
    result = runner.invoke(app, argv, env=env)
    assert result.exit_code == 0, result.output
    (scratch_dir,) = (home / "scratch").iterdir()
    scratch = Lake(str(scratch_dir))
    assert f"scratch lake {scratch_dir}" in result.output
    assert f"Landed in: {scratch_dir}/raw/salesforce/Opportunity/ds={DS}" in result.output
    landed = scratch.read_manifest(d.lake_path, DS)
    assert (landed.mode, landed.row_count, landed.key_checksum) == (
        "incremental", committed["row_count"], committed["key_checksum"])
    assert _partition_state(real, d.lake_path, DS) == before  # the committed partition is untouched
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        assert ledger.entries(conn, DS) == []  # and so is the ledger

    # A --lake that already holds the ds is refused without --replace.
    refused = runner.invoke(app, [*argv, "--lake", real.uri], env=env)
    assert refused.exit_code == 2
    assert "is already committed" in refused.stderr and "--replace" in refused.stderr
    assert _partition_state(real, d.lake_path, DS) == before

    # --replace: the profile's lake, replaced as the DAG's extract does, ledger recorded.
    replaced = runner.invoke(app, [*argv, "--replace"], env=env)
    assert replaced.exit_code == 0, replaced.output
    assert f"Landed in: {real.uri}/raw/salesforce/Opportunity/ds={DS}" in replaced.output
    after = _partition_state(real, d.lake_path, DS)
    assert after[0] != before[0] and not set(after[1]) & (set(before[1]) - {"_manifest.json"})
    assert real.read_manifest(d.lake_path, DS).row_count == committed["row_count"]
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        assert {(e.dataset, e.hop) for e in ledger.entries(conn, DS)} == {(d.dataset_id, "source"),
                                                                            (d.dataset_id, "raw")}
    assert len(list((home / "scratch").iterdir())) == 1  # no scratch lake for --replace


def test_a_salesforce_rerun_killed_before_its_manifest_leaves_the_previous_version_whole(
        stack, seeded, lake, warehouse_conn, monkeypatch):
    """Raw Salesforce: files written, manifest not → the committed version still reads whole, and
    the warehouse load (which reads what the gates read) agrees with its manifest."""
    from support.lake_faults import Killed, assert_previous_version_whole, kill_before_manifest, snapshot

    res = _resources(stack, lake, warehouse_conn)
    d = catalog.SALESFORCE["Opportunity"]
    start, end = ds_interval(DS)
    extract(res, d.dataset_id, DS, start, end)
    before = snapshot(lake, d.lake_path, DS)
    kill_before_manifest(monkeypatch, d.lake_path)
    with pytest.raises(Killed):
        extract(res, d.dataset_id, DS, start, end)
    assert_previous_version_whole(lake, d.lake_path, DS, before, d.key)
    loaded = load_partition(warehouse_conn, lake, d.lake_path, DS, "raw", d.warehouse_table, d.key)
    assert (loaded.row_count, loaded.key_checksum) == (before["row_count"], before["key_checksum"])


def test_a_backfill_reuses_the_landed_day_verified_and_ledgered_without_asking_the_source(
        stack, seeded, lake, warehouse_conn):
    from support.lake_faults import drop_rows

    from tally import ledger
    from tally.lake.verify import PartitionMismatch
    from tally.stages.extract import reuse_landed

    res = _resources(stack, lake, warehouse_conn)
    start, end = ds_interval(DS)
    landed = extract(res, "salesforce.Opportunity", DS, start, end)
    res.salesforce = None  # the source is not asked: a reused day needs no connection to it
    reused = reuse_landed(res, "salesforce.Opportunity", DS)
    assert reused["reused"] is True
    assert {k: reused[k] for k in landed} == landed
    with psycopg.connect(warehouse_conn.conninfo()) as conn:
        hops = ledger.flow(conn, DS)["salesforce.Opportunity"]
    assert hops["raw"].row_count == landed["row_count"] and hops["raw"].key_checksum == landed["key_checksum"]
    drop_rows(lake, catalog.get("salesforce.Opportunity").lake_path, DS, 1)  # the day changed after its commit
    with pytest.raises(PartitionMismatch, match="raw.salesforce.Opportunity ds=2026-04-30: .* holds 299 rows, the commit record says 300"):
        reuse_landed(res, "salesforce.Opportunity", DS)
