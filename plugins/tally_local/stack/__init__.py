"""The embedded local stack: `tally up | down | status` without Docker."""
