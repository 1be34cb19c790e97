"""Reconciliation: the verdict for one ds, the ledger judged with the DAG run's task states
(``verdict``), which keys a hop lost for one ds (``keys``), the ledger flow as tables for people
(``report``), and the full ERP-vs-warehouse comparison with bisection and healing (``full``)."""
