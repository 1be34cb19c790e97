"""The gates between the hops of a ds, one module per hop: ``raw`` (the landed source datasets),
``curated`` (Spark's outputs vs what the raw zone implies), ``warehouse`` (loaded slices vs their
manifests) and ``mart`` (dbt's marts vs the curated zone). Each stores every result in
``ops.validation_results`` and raises one ``DataProblem`` for the failed ones
(``tally.gates.common``); their SQL is in ``gates/sql/*.sql``."""
