-- Which raw slices (table, ds, loaded_at) each reconcile.erp_<table>_current has absorbed.
CREATE SCHEMA IF NOT EXISTS reconcile;
CREATE UNLOGGED TABLE IF NOT EXISTS reconcile.slices (
    table_name text        NOT NULL,
    ds         date        NOT NULL,
    loaded_at  timestamptz NOT NULL,
    PRIMARY KEY (table_name, ds)
);
