{#
    The open-pipeline business rule, defined once for the whole platform in
    `tally.contract.OPEN_PIPELINE_PROBABILITY`: an opportunity that is not closed, with a
    probability (percent) between the bounds inclusive, and a non-zero amount. The bounds come from
    the dbt vars `open_pipeline_min_probability` and `open_pipeline_max_probability`, which every
    caller of dbt passes from `tally.contract.dbt_vars()`; they have no default here on purpose.
    Returns a boolean SQL expression over the given columns (of curated.opportunities by default).
#}
{% macro is_open_pipeline(is_closed='is_closed', probability='probability', amount='amount') -%}
    {%- set low = var('open_pipeline_min_probability') -%}
    {%- set high = var('open_pipeline_max_probability') -%}
    {%- if execute and (low is not number or high is not number or low > high) -%}
        {{ exceptions.raise_compiler_error(
            "vars open_pipeline_min_probability / open_pipeline_max_probability must be numbers"
            ~ " (min <= max) from tally.contract.dbt_vars(), got: " ~ low ~ ", " ~ high) }}
    {%- endif -%}
    (
        not coalesce({{ is_closed }}, false)
        and {{ probability }} between {{ low }} and {{ high }}
        and {{ amount }} <> 0
    )
{%- endmacro %}
