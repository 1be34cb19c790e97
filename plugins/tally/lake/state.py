"""The state zone: per raw dataset and ds, the latest version of every key as of that ds,
tombstones included, so a day's curated build reads yesterday's state plus today's raw delta
instead of every raw partition ever landed (DESIGN.md: ds = previous ds's committed state +
ds's raw delta).

Layout: ``state/<source>/<object>/ds=<ds>`` (``state_path``), the raw columns plus ``_version``
(``ds=<raw ds>/<file>``, the order key that breaks cursor ties), committed with a ``Manifest``
like every partition. Besides the common fields (``mode`` is ``"full"`` or ``"incremental"``)
its extra values record what it was built from:

- ``consumed``: ``{raw ds: commit_id}`` of EVERY committed raw partition ``<= ds`` it reflects;
- ``delta``: the same for the raw partitions read in this build (all of them for a full build);
- ``base`` / ``base_commit``: the state ds it was built on and that manifest's ``commit_id``
  (null for a full build);
- ``live_rows``: rows not tombstoned; ``layout``: ``layout(dataset)`` when it was built;
- ``rebuilt_because``: why a newer base was not used (stale states, a forced full refresh), or null.

A state is **valid** exactly when its ``consumed`` equals the current raw commits ``<= ds``
(nothing re-committed, added or removed since), its ``layout`` is the dataset's current one and
its files match its commit record (footers). Anything else is stale and never used as a base:
the builder walks back to the newest valid state, or builds from all raw. The rule is exact
because a valid state's content is a function of the raw commits it names, whatever chain of
bases produced it.

Pure Python (pyarrow via ``tally.lake``): the Spark jobs (``spark_jobs/curated_lib.py``) build
and read states; the CLI uses ``stale_states`` to report stale chains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from tally import catalog
from tally.lake.manifest import Manifest, commit_id
from tally.lake.store import Lake
from tally.lake.verify import footer_problems

STATE_ZONE = "state"
# Bump when the way a state is derived changes (the upsert rule, the columns): every state
# built before then becomes stale (``layout``) and is rebuilt from raw.
STATE_FORMAT = 1


def _dataset(dataset: catalog.Dataset | str) -> catalog.Dataset:
    return catalog.get(dataset) if isinstance(dataset, str) else dataset


def state_path(dataset: catalog.Dataset | str) -> str:
    """``state/<source>/<object>``: where the states of a raw dataset are committed."""
    ds_ = _dataset(dataset)
    return f"{STATE_ZONE}/{ds_.source}/{ds_.name}"


def layout(dataset: catalog.Dataset | str) -> str:
    """A short hash of what a state's content depends on besides the raw data: the columns and
    their types, the key, the cursor, the tombstone flag and ``STATE_FORMAT``."""
    ds_ = _dataset(dataset)
    body = json.dumps({"format": STATE_FORMAT, "key": ds_.key, "cursor": ds_.cursor, "deleted": ds_.deleted_flag,
                       "fields": [[f.name, f.type] for f in ds_.fields]}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def consumed_ids(lake: Lake, dataset: catalog.Dataset | str, ds: str) -> dict[str, str]:
    """``{raw ds: commit_id}`` of every committed raw partition ``<= ds`` (manifests only, no
    data): what a state for ``ds`` built now reflects."""
    path = _dataset(dataset).lake_path
    ids = {}
    for part in lake.committed(path, up_to=ds):
        manifest = lake.read_manifest(path, part)
        if manifest is not None:  # uncommitted since the listing: not an input any more
            ids[part] = commit_id(manifest)
    return ids


def _first_difference(recorded: Mapping[str, str], current: Mapping[str, str]) -> str | None:
    """What changed in the raw zone since ``recorded``, earliest raw ds first (None: nothing)."""
    for part in sorted(set(recorded) | set(current)):
        if part not in current:
            return f"raw ds={part} is no longer committed"
        if part not in recorded:
            return f"raw ds={part} was committed after it was built"
        if recorded[part] != current[part]:
            return f"raw ds={part} was re-committed after it was built"
    return None


def staleness(lake: Lake, dataset: catalog.Dataset | str, manifest: Manifest,
              current: Mapping[str, str], *, check_files: bool = True) -> str | None:
    """Why the committed state ``manifest`` does not reflect the raw zone, or None when it does.

    ``current`` is ``consumed_ids`` for (at least) every raw ds up to the state's ds; entries
    after it are ignored. ``check_files`` also checks the state's files against its commit
    record (their footers: no data read)."""
    ds_ = _dataset(dataset)
    state_ds = manifest.get("ds")
    if manifest.get("layout") != layout(ds_):
        return "built for another layout (columns, key, cursor or tombstone flag changed)"
    recorded = manifest.get("consumed")
    if not isinstance(recorded, Mapping):
        return "it records no consumed raw commits"
    difference = _first_difference(recorded, {d: i for d, i in current.items() if state_ds is None or d <= state_ds})
    if difference is not None:
        return difference
    if check_files and state_ds is not None:
        problems, _ = footer_problems(lake, state_path(ds_), state_ds, manifest)
        if problems:
            return f"its files do not match its commit record: {'; '.join(problems)}"
    return None


def valid_base(lake: Lake, dataset: catalog.Dataset | str, ds: str,
               current: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The base for building the state of ``ds``: the greatest committed state ds ``< ds`` that is
    valid (``staleness`` is None), and why newer ones were passed over. ``(None, None)`` when
    no state was ever committed before ``ds`` (a first, full build); ``(None, reason)`` when
    every earlier state is stale (a full rebuild). ``current`` (``consumed_ids`` up to ``ds``)
    saves reading the raw manifests again."""
    ds_ = _dataset(dataset)
    if current is None:
        current = consumed_ids(lake, ds_, ds)
    path = state_path(ds_)
    skipped: list[str] = []
    for state_ds in reversed([d for d in lake.committed(path) if d < ds]):
        manifest = lake.read_manifest(path, state_ds)
        if manifest is None:
            continue
        reason = staleness(lake, ds_, manifest, current)
        if reason is None:
            return state_ds, _explain(skipped)
        skipped.append(f"state ds={state_ds} is stale: {reason}")
    return None, _explain(skipped)


def _explain(skipped: list[str]) -> str | None:
    """The stale states passed over, newest first; the first and the count when there are many."""
    if not skipped:
        return None
    if len(skipped) <= 3:
        return "; ".join(skipped)
    return f"{skipped[0]}; … and {len(skipped) - 2} more; {skipped[-1]}"


def stale_states(lake: Lake, dataset: catalog.Dataset | str) -> list[tuple[str, str]]:
    """Every committed state ds that no longer reflects the raw zone, with why (``staleness``),
    oldest first. Reads each raw and state manifest once and each state file's footer."""
    ds_ = _dataset(dataset)
    path = state_path(ds_)
    current = consumed_ids(lake, ds_, "9999-12-31")
    out = []
    for state_ds in lake.committed(path):
        manifest = lake.read_manifest(path, state_ds)
        if manifest is None:
            continue
        reason = staleness(lake, ds_, manifest, current)
        if reason is not None:
            out.append((state_ds, reason))
    return out


def stale_at(lake: Lake, ds: str, datasets: tuple[str, ...] | None = None) -> dict[str, str]:
    """{raw dataset id: why} for every dataset whose committed state for ``ds`` no longer reflects
    the raw zone (a raw ds ``<= ds`` re-landed or removed since the ds was built): the curated
    zone, the warehouse and the marts of ``ds`` were built from it and are stale too, until the
    ds is run again (``tally backfill --missing`` replays every such ds in order). A dataset
    with no state for ``ds`` (never built, or built before the state zone) is not listed."""
    from tally import contract

    out = {}
    for dataset_id in datasets or contract.RAW_DATASETS:
        manifest = lake.read_manifest(state_path(dataset_id), ds)
        if manifest is None:
            continue
        reason = staleness(lake, dataset_id, manifest, consumed_ids(lake, dataset_id, ds))
        if reason is not None:
            out[dataset_id] = f"state ds={ds} is stale: {reason}"
    return out
