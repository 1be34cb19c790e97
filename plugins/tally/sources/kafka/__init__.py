"""Kafka activity events: ``KafkaSource``, a stream source, and the micro-batch landing.

(Deterministic events for the local rig, and the producer ``tally seed`` calls, are in
:mod:`tally_local.events_generator`.)

- :mod:`tally.sources.kafka.source` — ``KafkaSource``: what the DAG tasks ask of the topic;
- :func:`tally.sources.kafka.landing.land_events` — a consumer-group run that lands
  micro-batches in ``raw/kafka/<name>/`` and ``quarantine/kafka/<name>/`` and commits offsets
  only after the lake commit; :func:`tally.sources.kafka.ledger.record_ledger` writes its
  ``ops.ledger`` rows;
- :mod:`tally.sources.kafka.schema` — the event contract; :mod:`tally.sources.kafka.layout` —
  where a micro-batch lands and what a stream's ds means; :mod:`tally.sources.kafka.probe` —
  high watermarks.

kafka-python is imported inside the functions that need it, so importing this
package is cheap.
"""

from tally.sources.kafka.source import KafkaSource

__all__ = ["KafkaSource"]
