-- What mart_revenue_by_country.observed.sql must find (same columns). Invoices and payments are
-- not in the curated zone: the live ERP rows as of ds, from the warehouse.
SELECT b.amount AS sum_bookings_amount, b.n AS sum_bookings_count, b.fx_missing AS sum_bookings_fx_missing,
       i.n AS sum_billings_count, p.n AS sum_collections_count
FROM (SELECT coalesce(sum(amount_reporting), 0) AS amount, count(*) AS n,
             count(*) FILTER (WHERE amount_reporting IS NULL) AS fx_missing
      FROM curated.order_links WHERE _ds = %(ds)s::date AND status IS DISTINCT FROM 'cancelled') AS b,
     (SELECT count(*) AS n
      FROM (SELECT DISTINCT ON (invoice_id) * FROM raw.erp_invoices WHERE _ds <= %(ds)s::date
            ORDER BY invoice_id, updated_at DESC NULLS LAST, _ds DESC, _loaded_at DESC) AS v
      WHERE NOT coalesce(_deleted, false) AND status IS DISTINCT FROM 'void') AS i,
     (SELECT count(*) AS n
      FROM (SELECT DISTINCT ON (payment_id) * FROM raw.erp_payments WHERE _ds <= %(ds)s::date
            ORDER BY payment_id, updated_at DESC NULLS LAST, _ds DESC, _loaded_at DESC) AS v
      WHERE NOT coalesce(_deleted, false)) AS p;
