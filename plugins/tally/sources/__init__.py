"""The sources Tally lands data from, one package each, and the registry that finds them by name.

- :mod:`tally.sources.base` — the ``Source`` protocols (``IntervalSource``, ``StreamSource``)
  and what a new source must implement;
- :mod:`tally.sources.salesforce` — ``SalesforceSource`` (REST and Bulk API 2.0);
- :mod:`tally.sources.erp` — ``ErpSource`` (the legacy ERP database, Postgres or MySQL/MariaDB);
- :mod:`tally.sources.kafka` — ``KafkaSource`` (the activity events topic, a stream).

:func:`for_dataset` builds the interval source of a catalog dataset from the stage's
``Resources``, by the dataset's ``source`` name, so callers never branch on source names.
Each factory imports its package when called: importing this package stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tally.sources.base import IntervalSource, Progress, Source, StreamSource

if TYPE_CHECKING:
    from tally.catalog import Dataset
    from tally.core.resources import Resources

__all__ = ["FACTORIES", "IntervalSource", "Progress", "Source", "StreamSource", "for_dataset", "interval_source"]


def _salesforce(res: Resources) -> IntervalSource:
    from tally.sources.salesforce import SalesforceSource

    return SalesforceSource.from_resources(res)


def _erp(res: Resources) -> IntervalSource:
    from tally.sources.erp import ErpSource

    return ErpSource.from_resources(res)


# source name (a dataset's ``source``) -> the factory building its interval source
FACTORIES: dict[str, Callable[[Resources], IntervalSource]] = {
    "salesforce": _salesforce,
    "erp": _erp,
}


def interval_source(res: Resources, name: str) -> IntervalSource:
    """The interval source called ``name``, built from ``res`` (``ValueError`` when its
    connection is not configured, ``KeyError`` for a name no source has)."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise KeyError(f"no source named {name!r} (known: {', '.join(sorted(FACTORIES))})") from None
    return factory(res)


def for_dataset(res: Resources, dataset: Dataset) -> IntervalSource:
    """The interval source that extracts ``dataset``."""
    return interval_source(res, dataset.source)
