{#
    The logical date (ds) a mart run is for, as a SQL date expression.
    `ds_var` is the value of `var('ds')` (read in the model itself, so unit tests can override it):
    a 'YYYY-MM-DD' string (or a YAML date), or none to use the latest `fallback_column` (`_ds` of a
    source table, `ds` of a curated staging model) of `fallback_relation`.
#}
{% macro run_ds(ds_var, fallback_relation, fallback_column='_ds') -%}
    {%- if ds_var is none or (ds_var | string | trim) == '' -%}
        (select max({{ fallback_column }}) from {{ fallback_relation }})
    {%- else -%}
        {%- set ds_str = ds_var | string | trim -%}
        {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', ds_str) -%}
            {{ exceptions.raise_compiler_error("var 'ds' must be a date 'YYYY-MM-DD', got: " ~ ds_str) }}
        {%- endif -%}
        cast('{{ ds_str }}' as date)
    {%- endif -%}
{%- endmacro %}


{#
    Pre-hook for a ds-partitioned incremental model: delete the whole ds partition first, so that a
    re-run replaces the ds exactly (rows that vanished upstream go too) and other ds are untouched.
    Runs inside the model's transaction; does nothing on the first build or on --full-refresh.
    `ds_column` is the model's ds column; `fallback_relation` and `fallback_column` as in run_ds.
#}
{% macro delete_ds_partition(ds_var, fallback_relation, ds_column='ds', fallback_column='_ds') -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ ds_column }} = {{ run_ds(ds_var, fallback_relation, fallback_column) }}
    {%- endif -%}
{%- endmacro %}
