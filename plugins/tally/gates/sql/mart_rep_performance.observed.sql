-- Business totals of the mart's ds slice (tally.gates.mart): one column per check, named as the
-- same column of mart_rep_performance.expected.sql. The mart table is filled in with psycopg.sql.
SELECT count(*) AS rows, coalesce(sum(won_amount), 0) AS sum_won_amount,
       coalesce(sum(open_pipeline), 0) AS sum_open_pipeline, coalesce(sum(won_count), 0) AS sum_won_count,
       coalesce(sum(closed_count), 0) AS sum_closed_count,
       coalesce(sum(opportunity_count), 0) AS sum_opportunity_count
FROM {mart} WHERE ds = %(ds)s::date;
