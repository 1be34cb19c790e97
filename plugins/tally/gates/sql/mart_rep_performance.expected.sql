-- What mart_rep_performance.observed.sql must find, from the curated zone (same columns).
SELECT count(*) AS rows, coalesce(sum(won_amount), 0) AS sum_won_amount,
       coalesce(sum(open_pipeline), 0) AS sum_open_pipeline, coalesce(sum(won_count), 0) AS sum_won_count,
       coalesce(sum(closed_count), 0) AS sum_closed_count,
       coalesce(sum(opportunity_count), 0) AS sum_opportunity_count
FROM curated.rep_rankings WHERE _ds = %(ds)s::date;
