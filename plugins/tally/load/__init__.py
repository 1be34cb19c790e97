"""The warehouse load: lake partitions COPYed into Postgres (``tally.load.warehouse``) and the
daily stage that loads every raw and curated dataset of a ds (``tally.load.stage.load``)."""
