"""The evidence of a Kafka landing run: each touched ds's committed totals, and the ledger rows
(hop ``raw``, dataset ``kafka.<name>``) that record them with offsets, quarantine and lag."""

from __future__ import annotations

from collections import Counter

from tally.lake import Lake
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
        "reasons": dict(sorted(reasons.items())),
    }


def record_ledger(conn, lake: Lake, report: dict) -> list:
    """One ``ops.ledger`` row (hop ``raw``) per ds this run touched: the ds's committed totals,
    with offsets, quarantine and the run's lag in ``details``."""
    from tally import ledger

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
                "lag": report.get("lag"), "lag_by_partition": {
                    p: v.get("lag") for p, v in report.get("partitions", {}).items()},
                "last_run": {"started_at": report["started_at"], **report["ds"][ds]},
            },
        )
        ledger.record(conn, entry)
        out.append(entry)
    return out


def format_lag(report: dict) -> str:
    parts = ", ".join(f"p{p}: {v['lag']} (offset {v['end_offset']} of {v['highwater']})"
                      for p, v in sorted(report.get("partitions", {}).items(), key=lambda kv: int(kv[0])))
    return f"consumer lag {report.get('lag')} [{parts}]"
