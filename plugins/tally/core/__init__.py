"""What every part of Tally shares: errors, resources of a run, configuration, Postgres helpers."""
