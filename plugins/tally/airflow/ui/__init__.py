"""The ledger view in the Airflow UI: ``plugin`` (the Airflow plugin, found through the
``airflow.plugins`` entry point), ``app`` (its FastAPI app), ``render`` (HTML and the SVG chart)."""
