"""The evidence of a Kafka landing run: each touched ds's committed totals, and the ledger rows
(hop ``raw``, dataset ``kafka.<name>``) that record them with offsets, quarantine, lag and schema
drift; and per ds the ``schema.kafka.<name>`` result in ``ops.validation_results`` (:func:`schema_result`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from tally.lake import Lake
from tally.quality.result import GateResult
from tally.sources.kafka import layout
from tally.sources.kafka.landing import DS_SEMANTICS, LandingError


def ds_summary(lake: Lake, topic: str, ds: str) -> dict | None:
    """The committed raw manifest's counts for one ds (what the ledger records)."""
    manifest = lake.read_manifest(layout.dataset_path(topic), ds)
    if manifest is None:
        return None
    q = lake.read_manifest(layout.dataset_path(topic, layout.QUARANTINE_ZONE), ds) or {}
    reasons: Counter[str] = Counter()
    for entry in (q.get("entries") or {}).values():
        reasons.update(entry.get("reasons", {}))
    return {
        "row_count": manifest["row_count"], "key_checksum": manifest["key_checksum"],
        "quarantined": manifest["quarantined"], "messages": manifest["source_count"],
        "offsets": manifest["watermark"]["partitions"], "files": len(manifest["files"]),
        "reasons": dict(sorted(reasons.items())), "schema_drift": manifest.get("schema_drift") or {},
        "committed_at": manifest.get("committed_at", ""),
    }


# A contract field missing or retyped in at least this share of a ds's events is schema drift (a
# producer changed): the schema check fails. Below it, those events are malformed rows (quarantined
# and counted, as every bad row is), shown as a warning so a steady trickle does not page.
DRIFT_SHARE = 0.05


def schema_result(topic: str, ds: str, drift: dict, committed_at: str = "", messages: int | None = None,
                  share: float = DRIFT_SHARE) -> GateResult:
    """The schema check of a ds's events (the manifest's ``schema_drift``), worded like the raw
    gate's (``tally.gates.raw.schema_check``): a contract field missing or of another type in at
    least ``share`` of the ds's ``messages`` fails (one failure per field; those events are
    quarantined and counted); in fewer, and fields outside the contract, are **warnings** (the
    former's events are quarantined, the latter's land without the fields)."""
    dataset = layout.ledger_dataset(topic)
    events = drift.get("events") or {}
    removed, retyped, added = drift.get("removed") or [], drift.get("retyped") or {}, drift.get("added") or []

    def drifted(kind: str, name: str) -> bool:
        seen = events.get(kind, {}).get(name)
        return not messages or seen is None or seen >= share * messages

    failures: list[dict] = []
    warnings: list[dict] = []
    for name in removed:
        (failures if drifted("removed", name) else warnings).append({
            "expectation": "source_field_still_exists", "column": name,
            "observed": f"absent in {events.get('removed', {}).get(name, '?')} of {messages or '?'} event(s)",
            "expected": "present in every event (those events are quarantined: missing:<field>)",
            **({} if drifted("removed", name) else {"severity": "warn"})})
    for name, change in retyped.items():
        (failures if drifted("retyped", name) else warnings).append({
            "expectation": "source_field_type_unchanged", "column": name,
            "observed": f"{change['now']} in {events.get('retyped', {}).get(name, '?')} of {messages or '?'} event(s)",
            "expected": f"{change['landed']} (those events are quarantined: wrong_type:<field>)",
            **({} if drifted("retyped", name) else {"severity": "warn"})})
    counts = events.get("added") or {}
    if added:
        warnings.append({"expectation": "source_field_added", "column": list(added), "severity": "warn",
                         "observed": f"{len(added)} field(s) outside the event contract: "
                                     + ", ".join(f"{n} ({counts.get(n, '?')} event(s))" for n in added),
                         "expected": "the contract's fields (a warning: the events land without them)"})
    failed_kinds = {f["expectation"] for f in failures}
    clean = 3 - len(failed_kinds | {w["expectation"] for w in warnings})  # the 3 checks with nothing found
    return GateResult(
        suite=f"schema.{dataset}", hop="raw", dataset=dataset, success=not failures,
        evaluated=clean + len(failed_kinds) + len(warnings),
        failed=len(failed_kinds), failures=failures, warnings=warnings,
        run_at=committed_at or datetime.now(UTC).isoformat(timespec="seconds"),
        target=f"{topic} ds={ds}: events vs the event contract; added: {', '.join(added) or 'none'}",
        parameters={"schema_drift": drift, "drift_share": share},
    )


def record_ledger(conn, lake: Lake, report: dict) -> list:
    """One ``ops.ledger`` row (hop ``raw``) per ds this run touched: the ds's committed totals,
    with offsets, quarantine, schema drift and the run's lag in ``details``; and the ds's
    ``schema.kafka.<name>`` result in ``ops.validation_results`` (failed on a missing or retyped
    contract field: recorded, not raised; see docs/sources/kafka.md)."""
    from tally import ledger
    from tally.ledger import validation_log

    topic = report["topic"]
    out = []
    for ds in sorted(report["ds"]):
        summary = ds_summary(lake, topic, ds)
        if summary is None:
            raise LandingError(f"{topic} ds={ds} was landed but has no manifest")
        entry = ledger.Entry(
            ds=ds, dataset=layout.ledger_dataset(topic), hop="raw", row_count=summary["row_count"],
            key_checksum=summary["key_checksum"],
            details={
                "topic": topic, "group": report["group"], "ds_semantics": DS_SEMANTICS,
                "messages": summary["messages"], "quarantined": summary["quarantined"],
                "quarantine_reasons": summary["reasons"], "offsets": summary["offsets"],
                "schema_drift": summary["schema_drift"],
                "lag": report.get("lag"), "lag_by_partition": {
                    p: v.get("lag") for p, v in report.get("partitions", {}).items()},
                "last_run": {"started_at": report["started_at"], **report["ds"][ds]},
            },
        )
        ledger.record(conn, entry)
        validation_log.store(conn, ds, schema_result(topic, ds, summary["schema_drift"], summary["committed_at"],
                                                   messages=summary["messages"]))
        out.append(entry)
    return out


def format_lag(report: dict) -> str:
    parts = ", ".join(f"p{p}: {v['lag']} (offset {v['end_offset']} of {v['highwater']})"
                      for p, v in sorted(report.get("partitions", {}).items(), key=lambda kv: int(kv[0])))
    return f"consumer lag {report.get('lag')} [{parts}]"
