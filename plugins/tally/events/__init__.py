"""Kafka activity events: the generator/producer, the contract, and the micro-batch landing.

- :func:`tally.events.generator.produce_events` — deterministic events (with some malformed
  ones) into a topic; what ``tally seed`` calls.
- :func:`tally.events.landing.land_events` — a consumer-group run that lands micro-batches in
  ``raw/kafka/<name>/`` and ``quarantine/kafka/<name>/`` and commits offsets only after the
  lake commit; :func:`tally.events.landing.record_ledger` writes its ``ops.ledger`` rows.

kafka-python is imported inside the functions that need it, so importing this
package is cheap.
"""
