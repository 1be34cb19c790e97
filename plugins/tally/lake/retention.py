"""Retention: which committed partitions of each zone the lake keeps, and pruning the rest.

The policy (``RetentionPolicy``, defaults in brackets; docs/lake.md):

- **raw**: kept forever. It is the only history (every later zone is rebuilt from it), so it
  is compacted (``tally.lake.compact``), never pruned.
- **quarantine**: kept forever: the evidence of rows that could not be landed, counted in the
  raw manifests.
- **state**: per dataset, the newest ``keep_days`` [35] ds (and any ds less than ``keep_days``
  days before today), the last committed ds of every calendar month, and always the newest
  *valid* state (``tally.lake.state.staleness``), however old. Pruning a state is safe: a build
  walks back to the newest valid state before its ds, or rebuilds from all raw
  (``tally.lake.state.valid_base``); the month ends bound how far it walks back.
- **curated**: per dataset, the newest ``keep_days`` [35] ds (and any ds less than ``keep_days``
  days before today). The warehouse holds the published copies; a backfill rebuilds older ones.

``plan`` says what would be removed (pure: manifests only); ``apply`` removes it, each partition
uncommitted first (its manifest), then its files (``tally.lake.writer.remove_partition``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import pyarrow.fs as pafs

from tally.lake.store import Lake
from tally.lake.writer import remove_partition

KEPT_FOREVER = ("raw", "quarantine")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many ds each pruned zone keeps (see the module)."""

    state_keep_days: int = 35
    curated_keep_days: int = 35
    state_month_ends: bool = True

    def __post_init__(self) -> None:
        if self.state_keep_days < 1 or self.curated_keep_days < 1:
            raise ValueError(f"bad retention policy {self}: keep_days must be >= 1")


@dataclass(frozen=True)
class Prune:
    """One committed partition the policy removes, and why."""

    zone: str
    dataset: str  # the lake path, <zone>/…
    ds: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _datasets(lake: Lake, zone: str) -> list[str]:
    """The dataset paths of a zone: every folder that holds ``ds=`` folders (state has
    ``state/<source>/<object>``, curated ``curated/<name>``)."""
    out: list[str] = []

    def walk(path: str, depth: int) -> None:
        base = lake.path(path)
        if depth > 3 or not lake.exists(base):
            return
        subdirs = [i.base_name for i in lake.fs.get_file_info(pafs.FileSelector(base, recursive=False))
                   if i.type == pafs.FileType.Directory]
        if any(d.startswith("ds=") for d in subdirs):
            out.append(path)
            return
        for d in sorted(subdirs):
            if not d.startswith(("_", ".")):
                walk(f"{path}/{d}", depth + 1)

    walk(zone, 0)
    return sorted(out)


def _recent(committed: list[str], keep_days: int, today: date) -> set[str]:
    """The newest ``keep_days`` ds, and every ds less than ``keep_days`` days before today."""
    since = (today - timedelta(days=keep_days - 1)).isoformat()
    return set(committed[-keep_days:]) | {d for d in committed if d >= since}


def month_ends(committed: Iterable[str]) -> set[str]:
    """The last committed ds of each calendar month (``2026-01-30`` when the 31st is missing)."""
    last: dict[str, str] = {}
    for ds in sorted(committed):
        last[ds[:7]] = ds
    return set(last.values())


def newest_valid_state(lake: Lake, state_path: str) -> str | None | bool:
    """The newest state ds that is valid, None when none is, False when the dataset is not in the
    catalog (its validity cannot be judged: nothing is pruned)."""
    from tally import catalog
    from tally.lake.state import consumed_ids, staleness

    dataset_id = ".".join(state_path.split("/")[1:])
    try:
        dataset = catalog.get(dataset_id)
    except KeyError:
        return False
    current = consumed_ids(lake, dataset, "9999-12-31")
    for ds in reversed(lake.committed(state_path)):
        manifest = lake.read_manifest(state_path, ds)
        if manifest is not None and staleness(lake, dataset, manifest, current) is None:
            return ds
    return None


def plan(lake: Lake, policy: RetentionPolicy | None = None, today: date | None = None) -> list[Prune]:
    """Every committed state and curated partition the policy removes (raw and quarantine are kept
    forever), oldest first per dataset. Reads manifests only (and each state file's footer)."""
    policy = policy or RetentionPolicy()
    today = today or datetime.now(UTC).date()
    out: list[Prune] = []
    for path in _datasets(lake, "state"):
        committed = lake.committed(path)
        newest_valid = newest_valid_state(lake, path)
        if newest_valid is False:
            continue
        keep = _recent(committed, policy.state_keep_days, today)
        if policy.state_month_ends:
            keep |= month_ends(committed)
        if newest_valid:
            keep.add(newest_valid)
        out += [Prune("state", path, ds, f"older than the newest {policy.state_keep_days} ds, not a month end, "
                      "not the newest valid state") for ds in committed if ds not in keep]
    for path in _datasets(lake, "curated"):
        committed = lake.committed(path)
        keep = _recent(committed, policy.curated_keep_days, today)
        out += [Prune("curated", path, ds, f"older than the newest {policy.curated_keep_days} ds (the warehouse "
                      "holds it; a backfill rebuilds it)") for ds in committed if ds not in keep]
    return out


def apply(lake: Lake, prunes: Iterable[Prune]) -> list[Prune]:
    """Remove each planned partition (manifest first, then its files); returns what was removed.
    Refuses a raw or quarantine partition whatever the plan says."""
    done = []
    for item in prunes:
        if item.zone in KEPT_FOREVER or item.dataset.split("/", 1)[0] in KEPT_FOREVER:
            raise ValueError(f"{item.dataset} ds={item.ds}: the {item.zone} zone is kept forever, never pruned")
        remove_partition(lake, item.dataset, item.ds)
        done.append(item)
    return done
