-- Business totals of the mart's ds slice (tally.gates.mart): one column per check, named as the
-- same column of the matching statement of mart_o2r_pipeline.expected.sql. The mart table is
-- filled in with psycopg.sql.

-- one row per order, plus one per opportunity without orders
SELECT count(*) AS rows, count(order_id) AS orders,
       coalesce(sum(order_amount_reporting), 0) AS sum_order_amount_reporting,
       coalesce(sum(opportunity_amount_reporting) FILTER (WHERE order_id IS NULL), 0)
         AS sum_orderless_opportunity_amount_reporting
FROM {mart} WHERE ds = %(ds)s::date;

-- every curated opportunity is in the mart
SELECT count(*) AS opportunities_present
FROM curated.opportunities c
WHERE c._ds = %(ds)s::date
  AND EXISTS (SELECT 1 FROM {mart} m WHERE m.ds = %(ds)s::date AND m.opportunity_id = c.opportunity_id);
