"""`tally seed`: fill the Salesforce simulator and the ERP database with synthetic data.

The ERP is a legacy system: ``order_lines`` has no foreign key (some lines lost their order),
and ``payments.amount`` is a varchar typed in by hand. Postgres (the embedded stack's ERP) and
MySQL/MariaDB get the same tables; ``seed_erp`` picks the dialect from the connection.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from tally.catalog import ERP
from tally.sources.erp.dialect import ErpConn, MySQLConn
from tally_local.generator import SyntheticData

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
    updated_at   timestamptz NOT NULL,
    sf_opportunity_ref text
);
-- ERP databases seeded before the column existed get it too
ALTER TABLE sales_orders ADD COLUMN IF NOT EXISTS sf_opportunity_ref text;
CREATE INDEX IF NOT EXISTS sales_orders_updated_at ON sales_orders (updated_at);
CREATE TABLE IF NOT EXISTS products (
    product_id bigint PRIMARY KEY,
    sku        text NOT NULL,
    name       text NOT NULL,
    category   text,
    list_price numeric(12, 2) NOT NULL,
    active     boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
    line_id         bigint PRIMARY KEY,
    order_id        bigint,
    line_no         integer NOT NULL,
    product_id      bigint,
    quantity        integer NOT NULL,
    unit_price      numeric(12, 2) NOT NULL,
    discount_amount numeric(12, 2) NOT NULL DEFAULT 0,
    line_amount     numeric(14, 2) NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS order_lines_updated_at ON order_lines (updated_at);
CREATE TABLE IF NOT EXISTS invoices (
    invoice_id     bigint PRIMARY KEY,
    order_id       bigint NOT NULL,
    invoice_number text NOT NULL,
    invoice_date   date NOT NULL,
    due_date       date,
    currency       char(3) NOT NULL,
    amount         numeric(14, 2) NOT NULL,
    status         text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS invoices_updated_at ON invoices (updated_at);
CREATE TABLE IF NOT EXISTS payments (
    payment_id   bigint PRIMARY KEY,
    invoice_id   bigint NOT NULL,
    payment_date date NOT NULL,
    method       text,
    amount       varchar(32),
    currency     char(3),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_updated_at ON payments (updated_at);
"""

# The same ERP on MySQL/MariaDB (InnoDB, DATETIME(6) holding UTC).
ERP_DDL_MYSQL = [
    """CREATE TABLE IF NOT EXISTS customers (
        customer_id BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, country VARCHAR(64),
        sf_account_ref VARCHAR(32), created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL,
        KEY customers_updated_at (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS sales_orders (
        order_id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL, order_date DATE NOT NULL,
        status VARCHAR(16) NOT NULL, currency CHAR(3) NOT NULL, total_amount DECIMAL(14, 2) NOT NULL,
        created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL, sf_opportunity_ref VARCHAR(32),
        KEY sales_orders_updated_at (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS products (
        product_id BIGINT PRIMARY KEY, sku VARCHAR(32) NOT NULL, name VARCHAR(255) NOT NULL,
        category VARCHAR(64), list_price DECIMAL(12, 2) NOT NULL, active TINYINT(1) NOT NULL,
        created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS order_lines (
        line_id BIGINT PRIMARY KEY, order_id BIGINT NULL, line_no INT NOT NULL, product_id BIGINT,
        quantity INT NOT NULL, unit_price DECIMAL(12, 2) NOT NULL, discount_amount DECIMAL(12, 2) NOT NULL DEFAULT 0,
        line_amount DECIMAL(14, 2) NOT NULL, created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL,
        KEY order_lines_updated_at (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS invoices (
        invoice_id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, invoice_number VARCHAR(32) NOT NULL,
        invoice_date DATE NOT NULL, due_date DATE, currency CHAR(3) NOT NULL, amount DECIMAL(14, 2) NOT NULL,
        status VARCHAR(16) NOT NULL, created_at DATETIME(6) NOT NULL, updated_at DATETIME(6) NOT NULL,
        KEY invoices_updated_at (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE IF NOT EXISTS payments (
        payment_id BIGINT PRIMARY KEY, invoice_id BIGINT NOT NULL, payment_date DATE NOT NULL,
        method VARCHAR(16), amount VARCHAR(32), currency CHAR(3), created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL, KEY payments_updated_at (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
]

# Children first, so that deleting in this order respects the one foreign key.
ERP_TABLES = ["payments", "invoices", "order_lines", "products", "sales_orders", "customers"]


def seed_erp(conn_info: ErpConn, data: SyntheticData) -> None:
    if isinstance(conn_info, MySQLConn):
        seed_erp_mysql(conn_info, data)
        return
    with psycopg.connect(conn_info.conninfo()) as conn:
        conn.execute(ERP_DDL)
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, ERP_TABLES))))
        for name in reversed(ERP_TABLES):
            cols = ERP[name].field_names
            stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols))
            )
            with conn.cursor().copy(stmt) as copy:
                for row in data.erp_rows(name):
                    copy.write_row([row[c] for c in cols])


def mysql_connect(conn_info: MySQLConn, **kwargs):
    import pymysql

    return pymysql.connect(host=conn_info.host, port=conn_info.port, user=conn_info.user,
                           password=conn_info.password, database=conn_info.dbname,
                           unix_socket=conn_info.unix_socket, charset="utf8mb4", **kwargs)


def _mysql_value(value):
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is not None:
        from datetime import UTC

        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def seed_erp_mysql(conn_info: MySQLConn, data: SyntheticData) -> None:
    conn = mysql_connect(conn_info, autocommit=False)
    try:
        with conn.cursor() as cur:
            for ddl in ERP_DDL_MYSQL:
                cur.execute(ddl)
            for name in ERP_TABLES:
                cur.execute(f"DELETE FROM `{name}`")  # noqa: S608
            for name in reversed(ERP_TABLES):
                cols = ERP[name].field_names
                stmt = f"INSERT INTO `{name}` ({', '.join(f'`{c}`' for c in cols)}) VALUES ({', '.join(['%s'] * len(cols))})"  # noqa: S608
                rows = [[_mysql_value(row[c]) for c in cols] for row in data.erp_rows(name)]
                for lo in range(0, len(rows), 1000):
                    cur.executemany(stmt, rows[lo:lo + 1000])
        conn.commit()
    finally:
        conn.close()


def seed_salesforce(store_path: Path, data: SyntheticData) -> None:
    from tally_local.sfsim.store import SalesforceStore

    store = SalesforceStore(store_path)
    try:
        store.reset()
        for obj, records in data.salesforce.items():
            store.upsert(obj, records)
    finally:
        store.close()
