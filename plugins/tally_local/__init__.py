"""Tally's local rig: everything that stands in for production on one machine, and no part of the product.

- ``tally_local.sfsim``: the Salesforce simulator (``python -m tally_local.sfsim``)
- ``tally_local.stack``: the embedded stack (Postgres, moto S3, tansu Kafka, the simulator, Airflow)
  behind ``tally up | down | status``
- ``tally_local.generator`` / ``tally_local.events_generator``: deterministic synthetic CRM, ERP and
  activity-event data; ``tally_local.seed`` loads it into the simulator and the ERP database
- ``tally_local.spark_cluster``: a Spark standalone master and worker started with ``spark-class``
- ``tally_local.cli``: the commands ``tally up``, ``down``, ``status``, ``seed``, ``demo`` and ``env``,
  added to the product's ``tally`` command through the ``tally.commands`` entry point group

Installed with the ``local`` extra (``pip install -e '.[local]'``). It may import ``tally``; ``tally``
never imports it (``tests/unit/test_import_rules.py``).
"""
