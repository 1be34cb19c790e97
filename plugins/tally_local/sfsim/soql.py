"""A SOQL subset, parsed and translated to parameterised SQLite SQL.

Supported::

    SELECT f1, f2 FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n]
    SELECT COUNT() FROM Obj [WHERE cond] [LIMIT n]

``cond`` is built from ``field op literal`` (``= != < <= > >=``), ``field [NOT] IN (literals)``,
``NOT``, ``AND``, ``OR`` and parentheses. As in Salesforce, ``AND`` and ``OR`` may not be mixed
at one level without parentheses, ``!=`` / ``NOT IN`` also match nulls, and each literal must
have the kind of its field (quoted strings for text and ids, bare ``2026-11-20`` for dates,
bare ``2026-11-20T00:00:00Z`` for datetimes, ``true``/``false``, numbers). Object and field names
are case-insensitive and are normalised to the catalog spelling.

Values never reach the SQL text: they become ``?`` parameters. Identifiers in the SQL come only
from the catalog. Datetimes are compared as text in the store format
``YYYY-MM-DDTHH:MM:SS.mmm+0000`` (see :func:`format_datetime`), which orders correctly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from tally.catalog import SALESFORCE, Dataset

MALFORMED_QUERY = "MALFORMED_QUERY"
# ``Dataset.extra`` key: {field: SQL expression} for fields that are computed, not stored
# (the simulator's describe drift, see :mod:`tally_local.sfsim.faults`).
VIRTUAL_COLUMNS = "sfsim_virtual_columns"
INVALID_TYPE = "INVALID_TYPE"
INVALID_FIELD = "INVALID_FIELD"


class SoqlError(ValueError):
    """A query Salesforce would reject; ``error_code`` and ``message`` are what the API returns."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


# --- Salesforce wire formats ------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """A tz-aware datetime as Salesforce writes it: ``2026-11-20T10:15:00.000+0000`` (UTC, ms)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: datetimes must be tz-aware (UTC)")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})\Z"
)


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 datetime with an explicit offset (``Z``, ``+00:00``, ``+0000``)."""
    m = _DATETIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a datetime with a UTC offset: {text!r}")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    offset = timedelta(0)
    if tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    micro = int((frac or "0").ljust(6, "0")[:6])
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second), micro, timezone(offset)
    ).astimezone(UTC)


# --- tokenizer --------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))(?![\w:.+-])
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\w:.+-])
  | (?P<number>[+-]?\d+(?:\.\d+)?)(?![\w:.+-])
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<other>[^\s(),']+|')
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


@dataclass(frozen=True)
class _Token:
    kind: str  # datetime | date | number | string | op | punct | ident | other | eof
    text: str
    pos: int

    def is_kw(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


def _tokenize(soql: str) -> list[_Token]:
    tokens = []
    for m in _TOKEN_RE.finditer(soql):
        if m.lastgroup != "ws":
            tokens.append(_Token(m.lastgroup or "other", m.group(), m.start()))
    tokens.append(_Token("eof", "<EOF>", len(soql.rstrip())))
    return tokens


# --- parsed query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderItem:
    field: str
    descending: bool = False
    nulls_last: bool = False  # SOQL default: NULLS FIRST for ASC, NULLS LAST for DESC


@dataclass(frozen=True)
class SoqlQuery:
    """A validated query. ``fields`` is empty for ``SELECT COUNT()``."""

    dataset: Dataset
    fields: tuple[str, ...]
    where: str | None = None  # SQL fragment with ``?`` placeholders
    params: tuple[object, ...] = ()
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None

    @property
    def object_name(self) -> str:
        return self.dataset.name

    @property
    def is_count(self) -> bool:
        return not self.fields

    def to_sql(self, *, include_deleted: bool, columns: tuple[str, ...] | None = None) -> tuple[str, list]:
        """SQL and parameters; ``include_deleted=False`` hides rows whose deleted flag is true.

        ``columns`` overrides the selected columns (the store adds the key to build record urls).
        For ``COUNT()`` the statement returns a single row holding the count.
        """
        conds, params = [], list(self.params)
        if self.where:
            conds.append(f"({self.where})")
        if not include_deleted and self.dataset.deleted_flag:
            conds.append(f"IFNULL({quote_ident(self.dataset.deleted_flag)}, 0) = 0")
        tail = f" FROM {quote_ident(self.object_name)}"
        if conds:
            tail += " WHERE " + " AND ".join(conds)
        if self.order_by and not self.is_count:
            tail += " ORDER BY " + ", ".join(
                f"{column_sql(self.dataset, o.field)} {'DESC' if o.descending else 'ASC'} "
                f"NULLS {'LAST' if o.nulls_last else 'FIRST'}"
                for o in self.order_by
            )
        if self.limit is not None:
            tail += " LIMIT ?"
            params.append(self.limit)
        # Identifiers come from the catalog only; every value is a ``?`` parameter.
        if self.is_count:
            return "SELECT COUNT(*) FROM (SELECT 1" + tail + ")", params  # noqa: S608
        selected = ", ".join(column_sql(self.dataset, c) for c in (columns or self.fields))
        return "SELECT " + selected + tail, params


def quote_ident(identifier: str) -> str:
    """Quote a catalog identifier for SQLite."""
    return '"' + identifier.replace('"', '""') + '"'


def column_sql(dataset: Dataset, name: str) -> str:
    """The SQL for a field: its quoted column, or its expression if the field is virtual."""
    return dataset.extra.get(VIRTUAL_COLUMNS, {}).get(name) or quote_ident(name)


# --- parser -----------------------------------------------------------------------------------

# Which literal kind each catalog type accepts, and the type name Salesforce uses in messages.
_LITERAL_KIND = {
    "id": ("string", "id"),
    "string": ("string", "string"),
    "bool": ("boolean", "boolean"),
    "int": ("number", "int"),
    "decimal": ("number", "currency"),
    "double": ("number", "double"),
    "date": ("date", "date"),
    "datetime": ("datetime", "dateTime"),
}

_CLAUSE_KEYWORDS = ("WHERE", "ORDER", "LIMIT", "GROUP", "HAVING", "OFFSET", "FOR", "WITH", "USING")


class _Parser:
    def __init__(self, soql: str, catalog: Mapping[str, Dataset]) -> None:
        self.soql = soql
        self.catalog = catalog
        self.tokens = _tokenize(soql)
        self.i = 0
        self.params: list[object] = []
        self.dataset: Dataset | None = None

    # token helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def error(self, message: str, tok: _Token | None = None, code: str = MALFORMED_QUERY) -> SoqlError:
        """A Salesforce-style error: the offending line, a caret, ``ERROR at Row:r:Column:c``."""
        pos = (tok or self.tok).pos
        line_start = self.soql.rfind("\n", 0, pos) + 1
        line_end = self.soql.find("\n", pos)
        line = self.soql[line_start : None if line_end < 0 else line_end]
        row, col = self.soql.count("\n", 0, pos) + 1, pos - line_start + 1
        return SoqlError(code, f"\n{line}\n{' ' * (col - 1)}^\nERROR at Row:{row}:Column:{col}\n{message}")

    def unexpected(self, tok: _Token | None = None) -> SoqlError:
        tok = tok or self.tok
        shown = tok.text if tok.kind == "eof" else f"'{tok.text}'"
        return self.error(f"unexpected token: {shown}", tok)

    def expect_kw(self, word: str) -> _Token:
        if not self.tok.is_kw(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> _Token:
        if not (self.tok.kind == "punct" and self.tok.text == char):
            raise self.unexpected()
        return self.advance()

    def at_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text == char

    # grammar
    def parse(self) -> SoqlQuery:
        self.expect_kw("SELECT")
        select = self.parse_select_list()
        self.expect_kw("FROM")
        self.dataset = self.resolve_object(self.advance())
        fields = () if select is None else tuple(self.resolve_field(t) for t in select)
        where = order_by = limit = None
        if self.tok.is_kw("WHERE"):
            self.advance()
            where = self.parse_condition()
        if self.tok.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order_by = self.parse_order_by()
        if self.tok.is_kw("LIMIT"):
            self.advance()
            tok = self.advance()
            if tok.kind != "number" or not tok.text.isdigit():
                raise self.unexpected(tok)
            limit = int(tok.text)
        if self.tok.kind != "eof":
            raise self.unexpected()
        return SoqlQuery(self.dataset, fields, where, tuple(self.params), order_by or (), limit)

    def parse_select_list(self) -> list[_Token] | None:
        """Field tokens, or ``None`` for ``COUNT()``."""
        if self.tok.is_kw("COUNT") and self.tokens[min(self.i + 1, len(self.tokens) - 1)].text == "(":
            start = self.advance()
            self.expect_punct("(")
            if not self.at_punct(")"):
                raise self.error("the simulator supports COUNT() only, not COUNT(field)", start)
            self.advance()
            if not self.tok.is_kw("FROM"):
                raise self.unexpected()
            return None
        fields = []
        while True:
            tok = self.advance()
            if tok.kind != "ident" or tok.is_kw("FROM"):
                raise self.unexpected(tok)
            if self.at_punct("("):
                raise self.error(f"function {tok.text}() is not supported by the simulator", tok)
            fields.append(tok)
            if not self.at_punct(","):
                return fields
            self.advance()

    def parse_order_by(self) -> tuple[OrderItem, ...]:
        items = []
        while True:
            name = self.resolve_field(self.advance())
            descending = False
            if self.tok.is_kw("ASC", "DESC"):
                descending = self.advance().text.upper() == "DESC"
            nulls_last = descending
            if self.tok.is_kw("NULLS"):
                self.advance()
                if not self.tok.is_kw("FIRST", "LAST"):
                    raise self.unexpected()
                nulls_last = self.advance().text.upper() == "LAST"
            items.append(OrderItem(name, descending, nulls_last))
            if not self.at_punct(","):
                return tuple(items)
            self.advance()

    def parse_condition(self) -> str:
        """``unary ((AND|OR) unary)*`` with a single operator per level, like Salesforce."""
        parts = [self.parse_unary()]
        joiner: str | None = None
        while self.tok.is_kw("AND", "OR"):
            op = self.tok.text.upper()
            if joiner not in (None, op):
                raise self.unexpected()  # mixing AND and OR needs parentheses
            joiner = op
            self.advance()
            parts.append(self.parse_unary())
        return parts[0] if joiner is None else f" {joiner} ".join(parts)

    def parse_unary(self) -> str:
        if self.tok.is_kw("NOT"):
            self.advance()
            # SQL's NULL would make NOT(...) drop rows; SOQL treats a null comparison as false.
            return f"NOT IFNULL({self.parse_unary()}, 0)"
        if self.at_punct("("):
            self.advance()
            inner = self.parse_condition()
            self.expect_punct(")")
            return f"({inner})"
        return self.parse_comparison()

    def parse_comparison(self) -> str:
        field_tok = self.advance()
        name = self.resolve_field(field_tok)
        ftype = self.field_type(name)
        col = column_sql(self.dataset, name)
        if self.tok.is_kw("NOT", "IN"):
            negate = self.advance().text.upper() == "NOT"
            if negate:
                self.expect_kw("IN")
            self.expect_punct("(")
            values = [self.parse_literal(name, ftype)]
            while self.at_punct(","):
                self.advance()
                values.append(self.parse_literal(name, ftype))
            self.expect_punct(")")
            if any(v is None for v in values):
                raise self.error("null is not supported in an IN list by the simulator", field_tok)
            self.params.extend(values)
            marks = ", ".join("?" * len(values))
            return f"({col} IS NULL OR {col} NOT IN ({marks}))" if negate else f"{col} IN ({marks})"
        if self.tok.kind != "op":
            raise self.unexpected()
        op = self.advance().text
        value_tok = self.tok
        value = self.parse_literal(name, ftype)
        if value is None:
            if op not in ("=", "!="):
                raise self.error(f"invalid operator on null: {op}", value_tok)
            return f"{col} IS {'NOT ' if op == '!=' else ''}NULL"
        self.params.append(value)
        if op == "!=":
            return f"{col} IS NOT ?"  # null-safe: SOQL's != also matches nulls
        return f"{col} {op} ?"

    def parse_literal(self, field_name: str, ftype: str) -> object:
        tok = self.advance()
        if tok.kind == "ident" and tok.text.upper() in ("TRUE", "FALSE", "NULL"):
            kind = "null" if tok.text.upper() == "NULL" else "boolean"
        elif tok.kind in ("string", "number", "date", "datetime"):
            kind = tok.kind
        else:
            raise self.unexpected(tok)
        if kind == "null":
            return None
        wanted, sf_type = _LITERAL_KIND[ftype]
        if kind != wanted:
            quoting = "be enclosed in quotes" if wanted == "string" else "not be enclosed in quotes"
            raise self.error(
                f"value of filter criterion for field '{field_name}' must be of type {sf_type} "
                f"and should {quoting}",
                tok,
                INVALID_FIELD,
            )
        if kind == "string":
            return self.unescape(tok)
        try:
            if kind == "boolean":
                return tok.text.upper() == "TRUE"
            if kind == "number":
                return (
                    int(tok.text) if ftype == "int" and tok.text.lstrip("+-").isdigit() else float(tok.text)
                )
            if kind == "date":
                return date.fromisoformat(tok.text).isoformat()
            return format_datetime(parse_datetime(tok.text))
        except ValueError:
            raise self.error(f"invalid {kind} literal: {tok.text}", tok) from None

    def unescape(self, tok: _Token) -> str:
        body, out, i = tok.text[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                nxt = body[i + 1]
                if nxt not in _ESCAPES:
                    raise self.error(
                        f"Invalid string literal '{tok.text}'. Illegal character sequence '\\{nxt}'", tok
                    )
                out.append(_ESCAPES[nxt])
                i += 2
            else:
                out.append(ch)
                i += 1
        return "".join(out)

    # catalog lookups
    def resolve_object(self, tok: _Token) -> Dataset:
        if tok.kind != "ident" or tok.is_kw(*_CLAUSE_KEYWORDS):
            raise self.unexpected(tok)
        for name, dataset in self.catalog.items():
            if name.lower() == tok.text.lower():
                return dataset
        raise self.error(
            f"sObject type '{tok.text}' is not supported. If you are attempting to use a custom object, "
            "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
            "describe call for the appropriate names.",
            tok,
            INVALID_TYPE,
        )

    def resolve_field(self, tok: _Token) -> str:
        assert self.dataset is not None
        if tok.kind != "ident":
            raise self.unexpected(tok)
        for name in self.dataset.field_names:
            if name.lower() == tok.text.lower():
                return name
        raise self.error(
            f"No such column '{tok.text}' on entity '{self.dataset.name}'. If you are attempting to use "
            "a custom field, be sure to append the '__c' after the custom field name. Please reference "
            "your WSDL or the describe call for the appropriate names.",
            tok,
            INVALID_FIELD,
        )

    def field_type(self, name: str) -> str:
        assert self.dataset is not None
        return next(f.type for f in self.dataset.fields if f.name == name)


def parse(soql: str, catalog: Mapping[str, Dataset] = SALESFORCE) -> SoqlQuery:
    """Parse and validate ``soql`` against ``catalog``; raise :class:`SoqlError` if Salesforce would."""
    if not soql or not soql.strip():
        raise SoqlError(MALFORMED_QUERY, "A query string has to be specified")
    return _Parser(soql, catalog).parse()


def translate(soql: str, *, include_deleted: bool = False) -> tuple[str, list]:
    """SOQL text to ``(sql, params)`` for the store's SQLite schema."""
    return parse(soql).to_sql(include_deleted=include_deleted)
