"""The legacy ERP database: ``ErpSource``, an interval source.

- :mod:`tally.sources.erp.extract` — one table, one data interval, to the lake;
- :mod:`tally.sources.erp.dialect` — Postgres and MySQL/MariaDB sessions (``ErpConn``, ``MySQLConn``);
- :mod:`tally.sources.erp.convert` — the source's text typed in Arrow, bad rows set aside;
- :mod:`tally.sources.erp.deletes` — hard deletes found by key, landed as tombstones.
"""

from tally.sources.erp.extract import ErpSource

__all__ = ["ErpSource"]
