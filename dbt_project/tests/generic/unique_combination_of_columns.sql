{#
    Fails for every combination of `combination_of_columns` that occurs more than once in `model`.
    (A local stand-in for dbt_utils.unique_combination_of_columns: no packages are downloaded.)
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
{%- set cols = combination_of_columns | join(', ') %}
select {{ cols }}, count(*) as n_rows
from {{ model }}
group by {{ cols }}
having count(*) > 1
{% endtest %}
