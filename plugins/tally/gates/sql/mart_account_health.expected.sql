-- What mart_account_health.observed.sql must find, from the curated zone (same columns). Open
-- pipeline (tally.contract.OPEN_PIPELINE_PROBABILITY): not closed, probability in the range
-- (inclusive, percent), non-zero amount; of live accounts.
SELECT e.n AS rows, e.events AS sum_events_30d, o.n AS sum_open_opportunities, o.amount AS sum_open_pipeline
FROM (SELECT count(*) AS n, coalesce(sum(events_30d), 0) AS events
      FROM curated.account_engagement WHERE _ds = %(ds)s::date) AS e,
     (SELECT count(*) AS n, coalesce(sum(o.amount_reporting), 0) AS amount
      FROM curated.opportunities o
      WHERE o._ds = %(ds)s::date
        AND NOT coalesce(o.is_closed, false)
        AND o.probability BETWEEN %(open_pipeline_min_probability)s AND %(open_pipeline_max_probability)s
        AND o.amount <> 0
        AND o.account_id IN (SELECT account_id FROM curated.account_engagement WHERE _ds = %(ds)s::date)) AS o;
