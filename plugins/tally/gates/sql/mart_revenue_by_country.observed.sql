-- Business totals of the mart's ds slice (tally.gates.mart): one column per check, named as the
-- same column of mart_revenue_by_country.expected.sql. The mart table is filled in with psycopg.sql.
SELECT coalesce(sum(bookings_amount), 0) AS sum_bookings_amount,
       coalesce(sum(bookings_count), 0) AS sum_bookings_count,
       coalesce(sum(bookings_fx_missing), 0) AS sum_bookings_fx_missing,
       coalesce(sum(billings_count), 0) AS sum_billings_count,
       coalesce(sum(collections_count), 0) AS sum_collections_count
FROM {mart} WHERE ds = %(ds)s::date;
