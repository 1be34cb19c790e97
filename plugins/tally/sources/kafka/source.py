"""``KafkaSource``: the activity events topic as a :class:`tally.sources.base.StreamSource`.

What a DAG task asks of the stream, over :mod:`tally.sources.kafka.landing` and :mod:`tally.sources.kafka.ledger`: whether the topic
exists (``topic_exists``), a landing run from the group's committed offsets (``land``) and
the ledger rows of the ds a run touched (``record_ledger``). kafka-python is imported only when
a run or a probe starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tally.contract import EVENTS_TOPIC
from tally.sources.kafka import landing, ledger
from tally.sources.kafka.probe import highwaters

if TYPE_CHECKING:
    from tally.lake import Lake
    from tally.ledger import Entry


class KafkaSource:
    """One topic, consumed by one group (single-writer: see :mod:`tally.sources.kafka.landing`)."""

    name = "kafka"

    def __init__(self, bootstrap: str, topic: str = EVENTS_TOPIC, group_id: str | None = None,
                 batch_size: int = 5_000) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id or landing.default_group(topic)
        self.batch_size = batch_size

    def topic_exists(self) -> bool:
        return bool(highwaters(self.bootstrap, self.topic))

    def land(self, lake: Lake, *, max_messages: int | None = None) -> dict[str, Any]:
        """Land the topic from the group's committed offsets (at most ``max_messages``); the report."""
        return landing.land_events(lake, self.bootstrap, self.topic, group_id=self.group_id,
                                   batch_size=self.batch_size, max_messages=max_messages)

    def record_ledger(self, conn: Any, lake: Lake, report: dict[str, Any]) -> list[Entry]:
        return ledger.record_ledger(conn, lake, report)
