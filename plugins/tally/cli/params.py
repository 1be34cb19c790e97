"""Strict input for every `tally` command: options that check their value while the command line is read.

``ds_option``, ``instant_option``, ``lake_option`` and the ``*Option`` types below carry a Typer
callback (made by :func:`checked`) that checks the value (dates through :mod:`tally.core.dates`, the
one parser; names against the catalog or the suites) and raises :class:`~tally.core.dates.InputError`
naming the expected form. The value is checked before the command's body runs, so a mistake never
reaches a database, the lake or the stack. A command's body may raise ``InputError`` too (a check
across options: ``--end`` before ``--start``). :class:`TallyGroup` (the ``tally`` app's class) turns
every ``InputError`` and every usage error Typer finds (a missing option, ``--limit abc``, an unknown
``--format``) into one line on stderr, ``error: …``, and exit code 2: never a traceback. A service
that cannot be reached (the warehouse: a wrong host or port in ``--dsn`` or the profile; Airflow's API)
is one line too, ``error: cannot reach the warehouse at host:port (reason)``, and exit code 6.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tally.core.dates import InputError, parse_ds, parse_instant

try:  # Typer >= 0.20 ships its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older Typer on click
    from click.exceptions import UsageError  # type: ignore[no-redef]

USAGE_EXIT = 2
UNREACHABLE_EXIT = 6  # the warehouse (or Airflow's API) cannot be reached: see unreachable()

__all__ = [
    "DsnOption",
    "ErpTableOption",
    "InputError",
    "SalesforceObjectOption",
    "SuiteOption",
    "TallyGroup",
    "not_blank",
    "check_dsn",
    "checked",
    "ds_option",
    "instant_option",
    "lake_option",
    "one_line_errors",
    "unreachable",
]


# -- the one handler -------------------------------------------------------------------------------
@contextmanager
def one_line_errors() -> Iterator[None]:
    """Report a user's mistake as one ``error: …`` line on stderr and exit 2; a warehouse or an
    Airflow API that cannot be reached (:func:`unreachable`) as one line and exit 6."""
    try:
        yield
    except InputError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        raise typer.Exit(USAGE_EXIT) from None
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tally` alone: Typer prints the help
            raise
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        typer.echo(f"error: {_one_line(exc.format_message())}{where}", err=True)
        raise typer.Exit(USAGE_EXIT) from None
    except Exception as exc:
        message = unreachable(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(UNREACHABLE_EXIT) from None


def unreachable(exc: BaseException) -> str | None:
    """``cannot reach the warehouse at host:port (reason)`` when ``exc`` says a Postgres connection
    could not be made or was lost, ``cannot reach Airflow's API at scheme://host:port (reason)`` (any
    other HTTP service: without "Airflow's API") when a request got no answer; None for anything else.
    Never the password or a URL's user info. psycopg and requests are looked up only if loaded: an
    error of theirs implies they are."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))  # not e.g. a statement timeout
    ):
        return f"cannot reach the warehouse at {_postgres_where(exc)} ({_postgres_reason(str(exc))})"
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.ConnectionError | requests.Timeout):
        from urllib.parse import urlsplit

        url = urlsplit(getattr(exc.request, "url", None) or "")
        where = f"{url.scheme}://{url.hostname}" + (f":{url.port}" if url.port else "") if url.hostname else "?"
        what = "Airflow's API at " if url.path.startswith(("/api/v2", "/auth/token")) else ""
        return f"cannot reach {what}{where} ({_http_reason(str(exc), type(exc).__name__)})"
    return None


def _postgres_where(exc: Exception) -> str:
    pgconn = getattr(exc, "pgconn", None)  # libpq's attempt: host and port as it used them
    if pgconn is not None and pgconn.host:
        host, port = pgconn.host.decode(errors="replace"), pgconn.port.decode(errors="replace")
        return f"{host}:{port}" if port else host
    found = re.search(r"failed to resolve host '([^']*)'", str(exc))  # psycopg resolves names itself
    return found.group(1) if found else "the configured host"


def _postgres_reason(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "connection failed"
    first = first.removeprefix("connection failed: ")
    if first.startswith("failed to resolve host"):
        return "host name not resolved: " + re.sub(r"^.*?: (\[Errno -?\d+\] )?", "", first)
    return re.sub(r'^connection to server (at|on) .*? failed: ', "", first).strip()


def _http_reason(text: str, kind: str) -> str:
    errno = re.search(r"\[Errno -?\d+\] ([^'\")(]+)", text)
    if errno:
        return errno.group(1).strip()
    return "timed out" if "timed out" in text else kind


def _one_line(text: str) -> str:
    return " ".join(text.split())


class TallyGroup(TyperGroup):
    """The ``tally`` app: options are read and commands run inside :func:`one_line_errors`."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


# -- callbacks -------------------------------------------------------------------------------------
def option_name(param: typer.CallbackParam) -> str:
    """How the user wrote the parameter: ``--ds`` for an option, ``ID`` for an argument."""
    opts = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return max(opts, key=len) if param.param_type_name == "option" and opts else param.human_readable_name


def checked(check: Callable[[str, str], Any]) -> Callable[..., Any]:
    """A Typer callback applying ``check(value, name)`` to a value (or each of a list); None passes."""

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:
            return value
        name = option_name(param)
        if isinstance(value, list | tuple):
            return [check(v, name) for v in value]
        return check(value, name)

    return callback


def _ds(value: str, name: str) -> str:
    return parse_ds(value, name)


def _instant(value: str, name: str) -> str:
    return parse_instant(value, name).isoformat()


def check_dsn(value: str, name: str = "--dsn") -> str:
    from psycopg import conninfo, errors

    try:
        conninfo.conninfo_to_dict(value)
    except errors.ProgrammingError as exc:
        raise InputError(
            f"{name} must be a libpq conninfo ('host=… dbname=…') or a postgresql:// URI, "
            f"got {value!r}: {_one_line(str(exc))}"
        ) from None
    return value


def _lake(value: str, name: str) -> str:
    from urllib.parse import urlparse

    scheme = urlparse(value).scheme
    if not value.strip() or scheme not in ("", "file", "s3", "s3a"):
        raise InputError(
            f"{name} must be a local directory, file:///path or s3://bucket/prefix, got {value!r}"
        )
    return value


def _salesforce_object(value: str, name: str) -> str:
    from tally import catalog

    if value not in catalog.SALESFORCE:
        raise InputError(
            f"{name} must be a Salesforce object Tally extracts ({', '.join(catalog.SALESFORCE)}), "
            f"got {value!r}"
        )
    return value


def _erp_table(value: str, name: str) -> str:
    from tally import catalog

    table = value.removeprefix("erp.")
    if table not in catalog.ERP:
        raise InputError(
            f"{name} must be an ERP table (full reconciliation covers the ERP tables only: "
            f"{', '.join(catalog.ERP)}), got {value!r}"
        )
    return value


def _suite(value: str, name: str) -> str:
    from tally.quality import suites

    try:
        known = suites.list_suites()
    except Exception:  # noqa: BLE001 - no expectations folder here: the index lookup says "no such validation"
        return value
    if known and value not in known:
        raise InputError(
            f"{name} must be a suite name like raw.salesforce.Opportunity (see expectations/), got {value!r}"
        )
    return value


def _text(value: str, name: str) -> str:
    if not value.strip():
        raise InputError(f"{name} must not be empty")
    return value


# -- option types ----------------------------------------------------------------------------------
def ds_option(help_text: str, *decls: str) -> Any:
    return typer.Option(*decls, help=help_text, callback=checked(_ds), metavar="YYYY-MM-DD")


def instant_option(help_text: str, *decls: str) -> Any:
    return typer.Option(*decls, help=help_text, callback=checked(_instant), metavar="ISO-8601")


def lake_option(help_text: str) -> Any:
    return typer.Option(callback=checked(_lake), help=help_text)


DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="TALLY_WAREHOUSE_DSN",
        show_default=False,
        callback=checked(check_dsn),
        help="Warehouse holding ops.alerts (libpq conninfo or URI); default: the profile's.",
    ),
]
SalesforceObjectOption = Annotated[
    str,
    typer.Option(
        "--object", callback=checked(_salesforce_object), help="Salesforce object, e.g. Opportunity"
    ),
]
ErpTableOption = Annotated[
    list[str] | None,
    typer.Option(callback=checked(_erp_table), help="With --full: only this ERP table (repeatable)."),
]
SuiteOption = Annotated[
    str | None,
    typer.Option(
        callback=checked(_suite),
        help="The newest validation page of this suite, e.g. raw.salesforce.Opportunity.",
    ),
]
not_blank = checked(_text)  # a callback: free text that must not be blank
