{#
    The logical date (ds) a mart run is for, as a SQL date expression.
    `ds_var` is the value of `var('ds')` (read in the model itself, so unit tests can override it):
    a 'YYYY-MM-DD' string (or a YAML date), or none to use the latest `_ds` of `fallback_relation`.
#}
{% macro run_ds(ds_var, fallback_relation) -%}
    {%- if ds_var is none or (ds_var | string | trim) == '' -%}
        (select max(_ds) from {{ fallback_relation }})
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
#}
{% macro delete_ds_partition(ds_var, fallback_relation, ds_column='ds') -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ ds_column }} = {{ run_ds(ds_var, fallback_relation) }}
    {%- endif -%}
{%- endmacro %}
