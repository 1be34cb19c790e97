"""What a source is to the rest of Tally: the ``Source`` protocols.

A source is a system Tally lands data from into the lake's raw zone, ``raw/<name>/<object>/``.
Every source has a ``name``: the first part of its dataset ids (``<name>.<object>``) and of its
lake paths. The pipeline asks one of two things of a source, so there are two protocols under
the common ``Source``:

- :class:`IntervalSource` — a system that can be asked for *the rows changed in a data
  interval* (Salesforce, the ERP database). ``extract`` lands one catalog dataset
  (:class:`tally.catalog.Dataset`) for ``[start - overlap, end)`` as partition ``ds``, replacing
  that partition atomically, and returns the committed manifest. Re-running a ds replaces it.
- :class:`StreamSource` — a log that is consumed, not queried (Kafka). ``land`` consumes what
  the stream holds now, from the consumer's committed position, lands it in micro-batches (each
  message in the ds its own timestamp says) and returns the run's report; ``record_ledger``
  writes the ledger rows of every ds a run touched.

**Adding a source.** Write a package ``tally/sources/<name>/`` whose class has ``name = "<name>"``
and implements one of the protocols (structural typing: no base class to inherit). An interval
source also needs:

1. a ``from_resources(res: tally.core.resources.Resources)`` classmethod that builds it from the
   stage's resources and raises ``ValueError("no <X> connection configured")`` when its
   connection is missing (a new connection is a new field of ``Resources``);
2. an entry in :data:`tally.sources.FACTORIES` (name -> that factory), so that
   ``tally.stages.extract`` finds it by the dataset's ``source`` without naming it;
3. its datasets in :mod:`tally.catalog` (and their ids in :mod:`tally.contract`).

The manifest ``extract`` returns must carry the common fields (``row_count``, ``key_checksum``,
``source_count``, ``watermark``, ``mode``, ``files``); the ledger's source hop expects
``source_count + tombstones - quarantined`` raw rows, so a source that lands tombstones for
deletes or sets rows aside in the quarantine zone records ``tombstones``/``quarantined`` in
the manifest's extra values, and a source that does neither leaves them out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tally.catalog import Dataset
    from tally.lake import Lake, Manifest
    from tally.ledger import Entry

# Called with the number of source records read so far (for a progress bar).
Progress = Callable[[int], None]


@runtime_checkable
class Source(Protocol):
    """Any source: its name is the first part of its dataset ids and lake paths."""

    name: str


@runtime_checkable
class IntervalSource(Source, Protocol):
    """A source asked for the rows changed in a data interval (Salesforce, the ERP)."""

    def extract(self, lake: Lake, dataset: Dataset, ds: str, start: datetime, end: datetime,
                progress: Progress | None = None) -> Manifest:
        """Land ``dataset`` for ``[start - overlap, end)`` as partition ``ds``; the committed manifest."""
        ...


@runtime_checkable
class StreamSource(Source, Protocol):
    """A log consumed from a committed position (Kafka)."""

    def land(self, lake: Lake, *, max_messages: int | None = None) -> dict[str, Any]:
        """Land what the stream holds now (at most ``max_messages``); the run's report, with the
        ``ds`` it touched under ``report["ds"]``."""
        ...

    def record_ledger(self, conn: Any, lake: Lake, report: dict[str, Any]) -> list[Entry]:
        """The ledger rows (hop ``raw``) of every ds ``report`` touched, written on ``conn``."""
        ...
