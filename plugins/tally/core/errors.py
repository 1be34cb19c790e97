"""Errors every part of Tally raises and recognises."""

from __future__ import annotations


class DataProblem(Exception):
    """A gate found the data wrong: not transient, retrying will not help."""

    def __init__(self, message: str, results: list | None = None) -> None:
        super().__init__(message)
        self.results = results or []
