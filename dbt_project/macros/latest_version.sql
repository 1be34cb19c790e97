{#
    The raw tables are incremental slices: a record is re-extracted into a new `_ds` slice whenever
    it changes. Return every column of `relation` for the latest version of each `key`: greatest
    `cursor` (the source's modification timestamp), ties broken by greatest `_ds`, then by greatest
    `_loaded_at`. Adds no columns.
#}
{% macro latest_version(relation, key, cursor) -%}
    select distinct on ({{ key }}) *
    from {{ relation }}
    order by {{ key }}, {{ cursor }} desc nulls last, _ds desc, _loaded_at desc
{%- endmacro %}
