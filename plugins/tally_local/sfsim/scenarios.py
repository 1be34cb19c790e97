"""Data scenarios an incremental Salesforce extractor must survive, applied to the store.

Each helper is one transaction on :class:`~tally_local.sfsim.store.SalesforceStore` and is visible to
the very next API call (REST cursors and finished Bulk jobs keep their snapshots). Times are
tz-aware datetimes (or ISO strings with an offset); they are stored with millisecond precision,
as Salesforce does.

* :func:`delete` - soft delete into the recycle bin: ``IsDeleted = true`` and
  ``SystemModstamp = at`` (Salesforce bumps SystemModstamp on delete). ``query`` hides the rows,
  ``queryAll`` returns them.
* :func:`undelete` - restore from the recycle bin (``IsDeleted = false``, ``SystemModstamp = at``).
* :func:`purge` - the recycle bin emptied (or a Bulk ``hardDelete``): rows vanish even from
  ``queryAll``. Works on soft-deleted and live rows alike, and on objects without a recycle bin.
* :func:`touch_same_second` - a bulk update giving all records the same ``SystemModstamp`` (the
  classic tie that breaks ``>`` watermarks and keyset paging on the timestamp alone).
* :func:`late_commit` - a record appears or changes now with a ``SystemModstamp`` in the past,
  earlier than a watermark an extractor may already have stored (long transactions commit late).

Objects without ``IsDeleted`` (User, DatedConversionRate) raise ``ValueError`` for
:func:`delete`/:func:`undelete`; unknown ids raise ``KeyError`` (a scenario that silently did
nothing would make a test pass for the wrong reason).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from tally.catalog import Dataset
from tally_local.sfsim.store import SalesforceStore

__all__ = ["delete", "late_commit", "purge", "touch_same_second", "undelete"]


def _ids(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(dict.fromkeys(ids))


def _require(store: SalesforceStore, obj: str, ids: list[str]) -> Dataset:
    ds = store.dataset(obj)
    found = store.existing_ids(obj, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise KeyError(f"{obj}: no record(s) {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return ds


def _flagged(store: SalesforceStore, obj: str, what: str) -> Dataset:
    ds = store.dataset(obj)
    if not ds.deleted_flag:
        raise ValueError(f"{obj} has no IsDeleted field (no recycle bin): it cannot be {what}")
    return ds


def delete(store: SalesforceStore, obj: str, ids: str | Iterable[str], at: datetime | str) -> int:
    """Soft-delete records: ``IsDeleted = true``, ``SystemModstamp = at``. Returns the count."""
    ds = _flagged(store, obj, "soft-deleted")
    ids = _ids(ids)
    _require(store, obj, ids)
    return store.update_fields(obj, ids, **{ds.deleted_flag: True, ds.cursor: at})


def undelete(store: SalesforceStore, obj: str, ids: str | Iterable[str], at: datetime | str) -> int:
    """Restore soft-deleted records: ``IsDeleted = false``, ``SystemModstamp = at``."""
    ds = _flagged(store, obj, "undeleted")
    ids = _ids(ids)
    _require(store, obj, ids)
    return store.update_fields(obj, ids, **{ds.deleted_flag: False, ds.cursor: at})


def purge(store: SalesforceStore, obj: str, ids: str | Iterable[str]) -> int:
    """Remove records for good (emptied recycle bin / hard delete). Returns how many existed."""
    ids = _ids(ids)
    _require(store, obj, ids)
    return store.delete_rows(obj, ids)


def touch_same_second(
    store: SalesforceStore, obj: str, ids: str | Iterable[str], at: datetime | str, **values: object
) -> int:
    """Give every record the same ``SystemModstamp = at`` (plus optional field ``values``)."""
    ds = store.dataset(obj)
    ids = _ids(ids)
    _require(store, obj, ids)
    return store.update_fields(obj, ids, **{**values, ds.cursor: at})


def late_commit(
    store: SalesforceStore,
    obj: str,
    record_or_id: str | Mapping[str, object],
    modstamp: datetime | str,
    **values: object,
) -> str:
    """Make a record appear (a mapping: upserted) or change (an id) now, stamped ``modstamp``.

    Returns the record's id. With an id, ``values`` are set too; with a mapping they are merged
    into it. ``modstamp`` overrides any ``SystemModstamp`` in the record.
    """
    ds = store.dataset(obj)
    if isinstance(record_or_id, str):
        _require(store, obj, [record_or_id])
        store.update_fields(obj, [record_or_id], **{**values, ds.cursor: modstamp})
        return record_or_id
    record = {**record_or_id, **values, ds.cursor: modstamp}
    if record.get(ds.key) is None:
        raise ValueError(f"{obj}: record without {ds.key}")
    store.upsert(obj, [record])
    return str(record[ds.key])
