"""How `tally` commands print: tables for people, JSON and TSV for scripts.

- :data:`console` is the one rich console. On a terminal it uses the terminal's width; when stdout
  is not a terminal (a pipe, a file, CI logs) it is wide, so tables are never cut at 80 columns
  and long URLs or paths never wrap mid-token (an explicit ``COLUMNS`` still wins).
- :func:`new_table` builds tables whose text columns fold (never cut with "…") and whose URL and
  path columns never break: give each column a kind (:class:`Col`).
- :func:`emit` prints one result in the ``--format`` a user chose: ``table`` (rich), ``json`` (one
  JSON document on stdout) or ``tsv`` (a header line, then one line per row; tabs, newlines and
  backslashes in values escaped as ``\\t``, ``\\n``, ``\\\\``). In ``json`` and ``tsv`` nothing
  else goes to stdout, so ``tally status --format json | jq`` works.
- :func:`print_line` prints a line holding a URL or path without rich inserting line breaks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table

WIDE = 1000  # columns when stdout is not a terminal: wider than any table Tally prints


class _Console(Console):
    """A console that is wide when it does not write to a terminal (rich's default there is 80)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self.is_terminal or self._width is not None or (os.environ.get("COLUMNS") or "").isdigit():
            return size
        return ConsoleDimensions(max(size.width, WIDE), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console: Console = _Console()


class Format(StrEnum):
    table = "table"
    json = "json"
    tsv = "tsv"


def parse_format(value: str | Format, what: str = "--format") -> Format:
    """``value`` as a :class:`Format`, or ``InputError`` naming the choices."""
    from tally.core.dates import InputError

    try:
        return Format(str(value).strip().lower())
    except ValueError:
        raise InputError(
            f"{what} must be one of {', '.join(f.value for f in Format)}, got {value!r}"
        ) from None


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="table: for people; json: one JSON document; tsv: a header line and one line per row.",
    ),
]

Kind = Literal["text", "number", "token", "url", "path"]


@dataclass(frozen=True)
class Col:
    """A column: its header, the record key it shows (default: the header) and its kind.

    ``text`` folds onto more lines when space is short; ``number`` is right-aligned and never
    wraps; ``token`` (a date, an id), ``url`` and ``path`` never break (other columns give way first)."""

    header: str
    key: str | None = None
    kind: Kind = "text"

    @property
    def field(self) -> str:
        return self.key or self.header


def new_table(title: str | None, columns: Iterable[Col | str]) -> Table:
    """A rich table with each column set up for its kind (strings are text columns)."""
    table = Table(title=title, title_justify="left")
    for col in columns:
        col = Col(col) if isinstance(col, str) else col
        if col.kind == "number":
            table.add_column(col.header, justify="right", no_wrap=True)
        elif col.kind in ("token", "url", "path"):
            table.add_column(col.header, no_wrap=True, overflow="fold", min_width=len(col.header))
        else:
            table.add_column(col.header, overflow="fold")
    return table


def plain(value: Any) -> Any:
    """``value`` as JSON can hold it: dates and instants in ISO 8601, decimals as strings, paths as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def to_json(document: Any) -> str:
    return json.dumps(plain(document), indent=2, ensure_ascii=False, default=str)


def _tsv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(plain(value), ensure_ascii=False, default=str, separators=(",", ":"))
    text = str(plain(value))
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def to_tsv(records: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """A header line of ``fields``, then one line per record (missing values empty)."""
    lines = ["\t".join(fields)]
    lines += ["\t".join(_tsv_cell(r.get(f)) for f in fields) for r in records]
    return "\n".join(lines)


def emit(
    fmt: Format,
    *,
    records: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    document: Any = None,
    table: Callable[[], None] | None = None,
) -> None:
    """Print a result in ``fmt``.

    ``records`` and ``fields`` are the rows for ``tsv`` (and, unless ``document`` is given, the JSON
    array); ``document`` is the one JSON document; ``table`` prints the human view (tables and
    any lines around them) and is only called for ``table``.
    """
    if fmt is Format.json:
        typer.echo(to_json(records if document is None else document))
    elif fmt is Format.tsv:
        typer.echo(to_tsv(records, fields))
    elif table is not None:
        table()
    else:
        from rich.markup import escape

        tbl = new_table(None, fields)
        for r in records:
            tbl.add_row(*(escape(_tsv_cell(r.get(f))) for f in fields))
        console.print(tbl)


def print_line(text: str, *, markup: bool = True) -> None:
    """One line that may hold a URL or a path: rich does not break it (the terminal may wrap it)."""
    console.print(text, soft_wrap=True, markup=markup, highlight=False)
