"""Segment checksums with bisection: find the keys whose (key, version) differ between two sides.

The data-diff approach, for integer keys. Each side answers three questions in its own
database (SQL pushed down, nothing but a few numbers crosses the wire until the end):

* ``bounds()``: the smallest and largest key;
* ``checksums(lo, hi, width)``: for the keys in ``[lo, hi)``, split into buckets of ``width``
  consecutive key values, each bucket's row count and sum of a 64-bit hash of (key, version)
  (one ``GROUP BY`` over the range);
* ``rows(lo, hi)``: the keys in ``[lo, hi)`` with their versions (only for small segments).

The whole key range is cut into ``top_buckets`` segments in one query per side; a segment
whose (count, checksum) differs is cut again into ``factor`` sub-segments, and so on, until a
differing segment holds at most ``leaf_rows`` rows on either side; then both sides list that
segment's keys and versions and they are compared in Python. Equal (count, checksum) is taken
as equal content: sums of 64-bit hashes collide with odds of about 2**-64 per segment.

Both sides' queries at each level run at the same time, one thread per side (each side keeps
its own connection), so the two databases work in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from tally.lake.checksum import MOD

ABSENT = "absent"  # a key a side does not hold (or holds only as a tombstone)


class Side(Protocol):
    """One side of the comparison (the ERP table, or the warehouse's current versions)."""

    def bounds(self) -> tuple[int, int] | None: ...

    def checksums(self, lo: int, hi: int, width: int) -> dict[int, tuple[int, int]]:
        """``{bucket: (rows, hash sum mod 2**64)}`` for keys in ``[lo, hi)``, bucket ``(key - lo) // width``;
        empty buckets may be left out."""
        ...

    def rows(self, lo: int, hi: int) -> dict[int, Any]:
        """``{key: row}`` for keys in ``[lo, hi)``; :meth:`version` reads a row's live version."""
        ...

    def version(self, row: Any) -> Any:
        """The row's version as the checksum saw it (None: the row has no version), or
        :data:`ABSENT` when the checksum leaves the row out (a tombstone in the warehouse:
        listed for the classification, absent for the comparison)."""
        ...


@dataclass
class DiffStats:
    levels: int = 0
    segments_compared: int = 0
    segments_differing: int = 0
    leaf_segments: int = 0
    rows_fetched: int = 0
    queries: int = 0
    source_rows: int = 0  # rows counted on each side at the top level
    target_rows: int = 0


@dataclass
class DiffResult:
    # key -> (source row or None, target row or None), only keys whose live versions differ
    differences: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    stats: DiffStats = field(default_factory=DiffStats)
    null_keys: int = 0  # source rows without a key (outside every key range), counted by the caller


def _state(side: Side, row: Any) -> Any:
    return ABSENT if row is None else side.version(row)


def _split(lo: int, hi: int, parts: int) -> int:
    """Bucket width that cuts ``[lo, hi)`` into at most ``parts`` buckets."""
    return max(1, -(-(hi - lo) // parts))


def diff(source: Side, target: Side, *, top_buckets: int = 1024, factor: int = 16, leaf_rows: int = 2000,
         parallel: bool = True, progress: Callable[[str], None] | None = None) -> DiffResult:
    """Every key whose live (key, version) differs between ``source`` and ``target``."""
    result = DiffResult()
    stats = result.stats
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tally-diff") if parallel else None

    def both(fn: Callable[[Side], Any]) -> tuple[Any, Any]:
        if pool is None:
            return fn(source), fn(target)
        a, b = pool.submit(fn, source), pool.submit(fn, target)
        return a.result(), b.result()

    try:
        sb, tb = both(lambda s: s.bounds())
        stats.queries += 2
        known = [b for b in (sb, tb) if b is not None]
        if not known:
            return result
        lo, hi = min(b[0] for b in known), max(b[1] for b in known) + 1
        # (lo, hi, width): segments to cut into buckets of ``width`` and compare
        pending = [(lo, hi, _split(lo, hi, top_buckets))]
        leaves: list[tuple[int, int]] = []
        level = 0
        while pending:
            level += 1
            stats.levels = level
            sums = both(lambda s, segs=pending: [s.checksums(a, b, w) for a, b, w in segs])
            stats.queries += 2 * len(pending)
            following = []
            for (seg_lo, seg_hi, width), ssum, tsum in zip(pending, sums[0], sums[1], strict=True):
                if level == 1:
                    stats.source_rows = sum(c for c, _ in ssum.values())
                    stats.target_rows = sum(c for c, _ in tsum.values())
                for bucket in sorted(set(ssum) | set(tsum)):
                    stats.segments_compared += 1
                    sc, sh = ssum.get(bucket, (0, 0))
                    tc, th = tsum.get(bucket, (0, 0))
                    if sc == tc and sh % MOD == th % MOD:
                        continue
                    stats.segments_differing += 1
                    b_lo = seg_lo + bucket * width
                    b_hi = min(seg_hi, b_lo + width)
                    if max(sc, tc) <= leaf_rows or b_hi - b_lo <= factor:
                        leaves.append((b_lo, b_hi))
                    else:
                        following.append((b_lo, b_hi, _split(b_lo, b_hi, factor)))
            if progress:
                progress(f"level {level}: {len(pending)} segment(s) cut, {len(following)} to cut further, "
                         f"{len(leaves)} to list")
            pending = following
        if leaves:
            listed = both(lambda s: [s.rows(a, b) for a, b in leaves])
            stats.queries += 2 * len(leaves)
            stats.leaf_segments = len(leaves)
            for srows, trows in zip(listed[0], listed[1], strict=True):
                stats.rows_fetched += len(srows) + len(trows)
                for key in set(srows) | set(trows):
                    s_row, t_row = srows.get(key), trows.get(key)
                    if _state(source, s_row) != _state(target, t_row):
                        result.differences[key] = (s_row, t_row)
        return result
    finally:
        if pool is not None:
            pool.shutdown()
