"""Data quality gates (Great Expectations 1.x) for every hop: raw, curated, warehouse, mart.

Importing this package is cheap: ``great_expectations`` (~9 s to import) is loaded only when a
gate actually validates, or up front by a long-lived parent that forks the gate tasks
(``tally.quality.preload``, the local Airflow scheduler). Suites live as JSON files in
``<repo>/expectations/``; every validation adds a page to the Data Docs site
(``tally.quality.docs``, ``tally docs``).
"""

from tally.quality.gate import (
    GateError,
    GateResult,
    QualityGateFailed,
    validate_dataframe,
    validate_parquet,
    validate_postgres_table,
)
from tally.quality.suites import SuiteError, list_suites, load_suite_dict

__all__ = [
    "GateError",
    "GateResult",
    "QualityGateFailed",
    "SuiteError",
    "list_suites",
    "load_suite_dict",
    "validate_dataframe",
    "validate_parquet",
    "validate_postgres_table",
]
