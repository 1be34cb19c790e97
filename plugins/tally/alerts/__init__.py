"""Alerts for on-call: one per (DAG, ds, gate), recorded in ``ops.alerts``, sent to Slack, a
webhook and email.

Modules (core: none imports Airflow):

- :mod:`tally.alerts.model`: :class:`~tally.alerts.model.Alert`, built from gate results or a
  task's error (what failed, where, observed vs expected, sample keys, links).
- :mod:`tally.alerts.config`: plain channel settings, from the environment; the Airflow adapter
  (``tally.airflow.connections.alert_config``) fills them from Connections instead.
- :mod:`tally.alerts.channels`: the Slack, webhook and SMTP senders and their payloads.
- :mod:`tally.alerts.store`: the ``ops.alerts`` table: dedupe, delivery status, acknowledgement.
- :mod:`tally.alerts.dispatch`: :func:`~tally.alerts.dispatch.raise_alert` ties them together.

The ``on_failure_callback`` DAG files import is ``tally.airflow.callback.alert_on_failure``.
"""
