-- Which of the given columns each of the given tables (schema-qualified names) has, in table
-- order: the mart gate refreshes their statistics before reconciling (tally.gates.mart).
SELECT n.nspname || '.' || c.relname, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attrelid = ANY(%(tables)s::regclass[]) AND a.attname = ANY(%(columns)s) AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum;
