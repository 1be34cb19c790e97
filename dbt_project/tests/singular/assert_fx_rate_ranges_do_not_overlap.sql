{#-
    Two rates of one currency in force on the same day would convert a document twice (a join
    fan-out). Returns each overlapping pair.
-#}
select a.currency_code, a.valid_from, a.valid_to, b.valid_from as other_valid_from, b.valid_to as other_valid_to
from {{ ref('int_fx_rates') }} as a
inner join {{ ref('int_fx_rates') }} as b
    on a.currency_code = b.currency_code
        and coalesce(a.valid_from, '-infinity'::date) < coalesce(b.valid_from, '-infinity'::date)
        and coalesce(a.valid_to, 'infinity'::date) > coalesce(b.valid_from, '-infinity'::date)
