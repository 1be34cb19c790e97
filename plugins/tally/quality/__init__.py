"""Data quality (Great Expectations 1.x) for every hop's gate (``tally.gates``): raw, curated,
warehouse, mart.

Importing this package is cheap: ``great_expectations`` (~9 s to import) is loaded only when a
gate actually validates, or up front by a long-lived parent that forks the gate tasks
(``tally.airflow.preload``, the local Airflow scheduler). Suites live as JSON files in
``<repo>/expectations/`` (``tally.quality.suites``); a validation's outcome is a
``tally.quality.result.GateResult``; the GX context and DataFrames are in
``tally.quality.context``, lake partitions in ``tally.quality.parquet``, Postgres tables in
``tally.quality.postgres``; every validation adds a page to the Data Docs site
(``tally.quality.docs``, ``tally docs``).
"""
