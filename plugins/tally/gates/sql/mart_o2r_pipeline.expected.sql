-- What mart_o2r_pipeline.observed.sql must find, from the curated zone (same statements, same columns).

SELECT l.n + c.n AS rows, l.n AS orders, l.amount AS sum_order_amount_reporting,
       c.amount AS sum_orderless_opportunity_amount_reporting
FROM (SELECT count(*) AS n, coalesce(sum(amount_reporting), 0) AS amount
      FROM curated.order_links WHERE _ds = %(ds)s::date) AS l,
     (SELECT count(*) AS n, coalesce(sum(c.amount_reporting), 0) AS amount
      FROM curated.opportunities c
      WHERE c._ds = %(ds)s::date
        AND NOT EXISTS (SELECT 1 FROM curated.order_links o
                        WHERE o._ds = %(ds)s::date AND o.opportunity_id = c.opportunity_id)) AS c;

SELECT count(*) AS opportunities_present FROM curated.opportunities WHERE _ds = %(ds)s::date;
