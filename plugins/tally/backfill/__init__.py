"""`tally backfill`: rebuild a range of ds through Airflow's backfill API, exactly or not at all.

``plan`` decides per ds where its raw data comes from (the lake's landed partitions, or the
source when that is exact) and refuses the rest; the CLI (``tally.cli.backfill``) and the DAG's
extract task (``tally.airflow.tasks.extract``) apply the same rule. ``report`` turns the ledger's
flow, the mart totals and the verdict of each ds into the final summary. docs/backfill.md.
"""
