"""`tally seed`: fill the Salesforce simulator and the ERP database with synthetic data."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from tally.catalog import ERP
from tally.config import PostgresConn
from tally.generator import SyntheticData

# The legacy ERP's own schema (what an on-premises system would have).
ERP_DDL = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id    bigint PRIMARY KEY,
    name           text NOT NULL,
    country        text,
    sf_account_ref text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS customers_updated_at ON customers (updated_at);
CREATE TABLE IF NOT EXISTS sales_orders (
    order_id     bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (customer_id),
    order_date   date NOT NULL,
    status       text NOT NULL,
    currency     char(3) NOT NULL,
    total_amount numeric(14, 2) NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sales_orders_updated_at ON sales_orders (updated_at);
"""


def seed_erp(conn_info: PostgresConn, data: SyntheticData) -> None:
    with psycopg.connect(conn_info.conninfo()) as conn:
        conn.execute(ERP_DDL)
        conn.execute("TRUNCATE sales_orders, customers")
        for name in ("customers", "sales_orders"):
            cols = ERP[name].field_names
            stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols))
            )
            with conn.cursor().copy(stmt) as copy:
                for row in data.erp[name]:
                    copy.write_row([row[c] for c in cols])


def seed_salesforce(store_path: Path, data: SyntheticData) -> None:
    from tally.sfsim.store import SalesforceStore

    store = SalesforceStore(store_path)
    try:
        store.reset()
        for obj, records in data.salesforce.items():
            store.upsert(obj, records)
    finally:
        store.close()
