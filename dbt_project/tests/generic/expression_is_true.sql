{#
    Fails for every row of `model` where the boolean SQL `expression` is not true (false or null).
    (A local stand-in for dbt_utils.expression_is_true: no packages are downloaded.)
#}
{% test expression_is_true(model, expression, column_name=none) %}
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
{% endtest %}
