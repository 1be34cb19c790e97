{#
    The raw tables are incremental slices: a record is re-extracted into a new `_ds` slice whenever
    it changes. Return every column of `relation` for the latest version of each `key`: greatest
    `cursor` (the source's modification timestamp), ties broken by greatest `_ds`, then by greatest
    `_loaded_at`. Adds no columns.

    `as_of` (a SQL date expression, optional): consider only slices with `_ds <= as_of`, i.e. the
    state of the source as of the end of that logical date (backfills see what that ds saw).
#}
{% macro latest_version(relation, key, cursor, as_of=none) -%}
    select distinct on ({{ key }}) *
    from {{ relation }}
    {%- if as_of is not none %}
    where _ds <= {{ as_of }}
    {%- endif %}
    order by {{ key }}, {{ cursor }} desc nulls last, _ds desc, _loaded_at desc
{%- endmacro %}
