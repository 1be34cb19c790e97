-- Business totals of the mart's ds slice (tally.gates.mart): one column per check, named as the
-- same column of mart_account_health.expected.sql. The mart table is filled in with psycopg.sql.
SELECT count(*) AS rows, coalesce(sum(events_30d), 0) AS sum_events_30d,
       coalesce(sum(open_opportunities), 0) AS sum_open_opportunities,
       coalesce(sum(open_pipeline), 0) AS sum_open_pipeline
FROM {mart} WHERE ds = %(ds)s::date;
