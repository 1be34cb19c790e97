"""The curated gate: Spark's outputs of a ds hold exactly what the raw zone implies."""

from __future__ import annotations

from datetime import UTC, datetime

from tally import catalog, contract
from tally.core.errors import DataProblem
from tally.core.resources import Resources, check_ds, record
from tally.gates.common import store_and_raise
from tally.lake import Lake
from tally.ledger import Entry
from tally.quality.result import GateResult

# Manifest counts copied to the ledger's curated hop (what on-call needs to see where rows went).
CURATED_COUNTS = ("resolution_counts", "unresolved", "link_counts", "unlinked_reasons", "fx_missing", "skipped",
                  "events", "reporting_currency")


def live_records(lake: Lake, dataset_id: str, ds: str, columns: tuple[str, ...] = ()) -> dict[object, dict]:
    """Records alive as of ds, computed from the raw zone (latest version per key: greatest
    cursor, then greatest ds; tombstones removed), as ``{key: {column: value}}`` for ``columns`` —
    the gate's own expectation of what Spark's curated snapshots must contain.

    It starts from the newest valid state before ds (``tally.lake.state``: the state a previous
    day's gate already checked the outputs of) and applies the raw partitions after it, so it
    checks today's step without reading all history; with no valid earlier state, from all raw."""
    import pyarrow.compute as pc

    from tally.lake.state import state_path, valid_base

    dataset = catalog.get(dataset_id)
    flag = [dataset.deleted_flag] if dataset.deleted_flag else []
    cols = list(dict.fromkeys([dataset.key, dataset.cursor, *flag, *columns]))
    latest: dict[object, tuple] = {}

    def apply(table, versions) -> None:
        if flag:
            table = table.set_column(2, flag[0], pc.fill_null(table.column(2), False))
        for row, part_ds in zip(zip(*(table.column(c).to_pylist() for c in cols), strict=True), versions, strict=True):
            key, cursor = row[0], row[1]
            # Spark's order: greatest cursor (a NULL cursor loses to any), then greatest ds
            rank = (1, cursor, part_ds) if cursor is not None else (0, part_ds)
            have = latest.get(key)
            if have is None or rank >= have[0]:
                latest[key] = (rank, bool(row[2]) if flag else False, row)

    base, _ = valid_base(lake, dataset, ds)
    if base is not None:  # verified against the state's commit record, like every read
        state = lake.read_table(state_path(dataset), base, columns=[*cols, "_version"], verify=True)
        apply(state.select(cols), [v[3:13] for v in state.column("_version").to_pylist()])
    for part_ds in lake.committed(dataset.lake_path, up_to=ds):
        if base is not None and part_ds <= base:
            continue
        # verified against the raw manifest: a damaged raw file fails here, named as raw, rather
        # than becoming the expectation Spark's output is compared with
        table = lake.read_table(dataset.lake_path, part_ds, columns=cols, verify=True)
        apply(table, [part_ds] * table.num_rows)
    return {k: {c: row[cols.index(c)] for c in columns} for k, (_, deleted, row) in latest.items() if not deleted}


def live_keys(lake: Lake, dataset_id: str, ds: str) -> set:
    """The keys of ``live_records``."""
    return set(live_records(lake, dataset_id, ds))


def expected_curated_keys(lake: Lake, ds: str) -> dict[str, list[str]]:
    """The key of every row each curated dataset must hold for ds, derived from the raw zone
    independently of Spark (docs/curated.md): one row per live ERP customer, live opportunity,
    live ERP order and live account; one per (owner, quarter of CloseDate) of the live
    opportunities that have both."""
    opportunities = live_records(lake, "salesforce.Opportunity", ds, ("OwnerId", "CloseDate"))
    rankings = {f"{o['OwnerId']}:{o['CloseDate'].year}-Q{(o['CloseDate'].month - 1) // 3 + 1}"
                for o in opportunities.values() if o["OwnerId"] is not None and o["CloseDate"] is not None}
    return {
        "conformed_customers": [str(k) for k in live_keys(lake, "erp.customers", ds)],
        "opportunities": [str(k) for k in opportunities],
        "order_links": [str(k) for k in live_keys(lake, "erp.sales_orders", ds)],
        "rep_rankings": sorted(rankings),
        "account_engagement": [str(k) for k in live_keys(lake, "salesforce.Account", ds)],
    }


def _accounting_failures(name: str, manifest: dict) -> list[dict]:
    """Counts in a curated manifest that must add up: every row is in exactly one bucket."""
    def check(what: str, observed, expected) -> list[dict]:
        return [] if observed == expected else [{"expectation": f"manifest_{what}_add_up", "column": None,
                                                  "observed": observed, "expected": expected}]

    rows, out = manifest["row_count"], []
    if name == "conformed_customers":
        counts = manifest.get("resolution_counts") or {}
        out += check("resolution_counts", sum(counts.values()), rows)
        out += check("unresolved", manifest.get("unresolved"),
                     counts.get("missing_ref", 0) + counts.get("unknown_account", 0))
    elif name == "order_links":
        links = manifest.get("link_counts") or {}
        out += check("link_counts", sum(links.values()), rows)
        out += check("unlinked_reasons", sum((manifest.get("unlinked_reasons") or {}).values()),
                     links.get("unlinked", 0))
    elif name == "account_engagement":
        ev = manifest.get("events") or {}
        out += check("events", ev.get("events_read"), sum(ev.get(k, 0) for k in
                                                          ("duplicate_events", "events_matched",
                                                           "events_unmatched_account")))
    return out


def gate_curated(res: Resources, ds: str) -> list[dict]:
    """Validate Spark's outputs against what the raw zone implies; ledger: curated hop.

    Per dataset: the GX suite (row count = the live records the gate computed itself, keys,
    domains), and a check that the manifest's key checksum equals the checksum of the expected
    keys and that its counts add up (``resolution_counts``, ``link_counts``, events)."""
    from tally.lake.checksum import checksum
    from tally.quality import docs
    from tally.quality.parquet import validate_parquet

    check_ds(ds)
    expected = expected_curated_keys(res.lake, ds)
    results, entries = [], []
    with docs.batch_publish():  # one Data Docs index update for the five datasets
        for name in contract.CURATED:
            path = f"curated/{name}"
            manifest = res.lake.read_manifest(path, ds)
            if manifest is None:
                raise DataProblem(f"curated.{name} ds={ds} is not committed: did the Spark job run?")
            missing_files = [f for f in res.lake.files(path, ds) if not res.lake.exists(f)]
            if missing_files:
                raise DataProblem(f"curated.{name} ds={ds}: {len(missing_files)} file(s) the manifest lists are gone")
            want_rows, want_checksum = len(expected[name]), checksum(expected[name])
            results.append(validate_parquet(f"curated.{name}", res.lake, path, ds, {"expected_rows": want_rows}))
            failures = _accounting_failures(name, manifest)
            if manifest["key_checksum"] != want_checksum:
                failures.append({"expectation": "curated_key_checksum_equals_live_raw_keys",
                                 "column": catalog.CURATED_KEYS[name], "observed": manifest["key_checksum"],
                                 "expected": want_checksum})
            results.append(GateResult(
                suite=f"accounting.curated.{name}", hop="curated", dataset=name, success=not failures,
                evaluated=2, failed=len(failures), failures=failures, run_at=datetime.now(UTC).isoformat(),
                target=f"{res.lake.uri}/{path}/ds={ds}/_manifest.json"))
            counts = {k: v for k, v in manifest.items() if k in CURATED_COUNTS}
            entries.append(Entry(ds, name, "curated", manifest["row_count"], manifest["key_checksum"],
                                 {"inputs": manifest.get("inputs", {}), "expected_rows": want_rows, **counts}))
    record(res, *entries)
    return store_and_raise(res, ds, results)
