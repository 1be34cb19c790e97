"""Tally's Airflow adapter: the only package of ``tally`` that imports Airflow.

- ``tally.airflow.connections``: Airflow Connections → ``tally.core.resources.Resources``, the
  Kafka bootstrap servers and the alert channels' configuration;
- ``tally.airflow.tasks``: one function per DAG task, each calling its core function by reference,
  data problems turned into ``AirflowFailException``;
- ``tally.airflow.callback``: the DAGs' ``on_failure_callback`` (cheap to import at parse time);
- ``tally.airflow.macros``: the Spark tasks' template macros, rendered when a task runs;
- ``tally.airflow.preload``: ``python -m tally.airflow.preload scheduler``, Airflow's CLI with
  Great Expectations imported first, so the gate tasks forked from it start warm.

Nothing else in ``tally`` imports this package, so the core stays free of Airflow. Its modules use
absolute imports only: ``import airflow`` inside them is Airflow itself, not this package.
"""
