"""Reconciliation: which keys a hop lost for one ds (``keys``), the ledger flow as tables for people
(``report``), and the full ERP-vs-warehouse comparison with bisection and healing (``full``)."""
