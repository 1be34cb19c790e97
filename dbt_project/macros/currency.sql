{#
    The reporting currency every mart amount is in: dbt var `reporting_currency`, else the
    environment variable TALLY_REPORTING_CURRENCY (the one the Spark jobs get), else USD.
    Returned as a quoted SQL literal.
#}
{% macro reporting_currency() -%}
    {%- set code = var('reporting_currency', env_var('TALLY_REPORTING_CURRENCY', 'USD')) | string | trim | upper -%}
    {%- if not modules.re.fullmatch('[A-Z]{3}', code) -%}
        {{ exceptions.raise_compiler_error("reporting currency must be an ISO 4217 code like 'USD', got: " ~ code) }}
    {%- endif -%}
    '{{ code }}'
{%- endmacro %}


{#
    The corporate currency of the Salesforce org: DatedConversionRate rates are units of a currency
    per one unit of it, and it has rate 1 (no rows). dbt var `corporate_currency`, default USD.
#}
{% macro corporate_currency() -%}
    '{{ var('corporate_currency', 'USD') | string | trim | upper }}'
{%- endmacro %}


{#
    Join condition: the FX rate row `rate_alias` (of int_fx_rates) for `currency_sql` in force on
    `date_sql`, i.e. valid_from <= date < valid_to, a null bound being open.
#}
{% macro fx_rate_in_force(rate_alias, currency_sql, date_sql) -%}
    {{ rate_alias }}.currency_code = {{ currency_sql }}
    and ({{ rate_alias }}.valid_from is null or {{ date_sql }} >= {{ rate_alias }}.valid_from)
    and ({{ rate_alias }}.valid_to is null or {{ date_sql }} < {{ rate_alias }}.valid_to)
{%- endmacro %}


{#
    The curated contract's FX rule: amount_reporting = amount / rate(source, d) * rate(reporting, d),
    as Spark computes it: rates taken to Salesforce's 6 decimal places, amount * rate(reporting)
    first (exact), then one division, rounded half away from zero to the money scale (9). A
    document already in the reporting currency keeps its amount exactly (no rate needed). Null when
    a rate is missing: never dropped, and counted by the models that use it.
#}
{% macro to_reporting(amount_sql, currency_sql, source_rate_sql, reporting_rate_sql) -%}
    case
        when {{ amount_sql }} is null then null
        when {{ currency_sql }} = {{ reporting_currency() }} then {{ amount_sql }}
        else round(
            {{ amount_sql }} * round(cast({{ reporting_rate_sql }} as numeric), 6)
                / round(cast({{ source_rate_sql }} as numeric), 6),
            9
        )
    end
{%- endmacro %}
