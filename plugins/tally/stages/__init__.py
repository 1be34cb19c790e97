"""The stages of one logical date (ds) that move data, as plain functions over ``Resources``:
``extract`` (sources → raw zone), ``tally.load.stage.load`` (lake → warehouse) and ``dbt`` (the
marts). The gates between them are in ``tally.gates``. The Airflow tasks
(``tally.airflow.tasks``), the CLI and the tests all call these; none of them imports Airflow.
Every stage records what it saw in the ledger, so a loss shows up at the hop it happened."""
