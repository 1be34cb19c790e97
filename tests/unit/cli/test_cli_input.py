"""Strict input: every `tally` command, given a bad value for any of its options, prints one
`error: …` line on stderr and exits 2 before it touches anything (issue 15, item 2).

The commands are enumerated from the app (the local rig's included), so a new command or option
is covered without editing this file; a new text option must be given bad values in BAD.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from enum import Enum

import pytest
import typer.main
from typer.testing import CliRunner

from tally.cli import app

BAD_DATES = ["2026-13-45", "2026-99-99", "2026-02-30", "yesterday", "12/02/2026", "20261202", "2026-1-5", ""]
BAD_INSTANTS = ["yesterday", "12/02/2026", "2026-13-45T00:00:00Z", "2026-12-01T25:00", ""]

# Bad values for the text options, by parameter name (ints, enums and flags are derived from their type).
BAD: dict[str, list[str]] = {
    "ds": BAD_DATES,
    "as_of": BAD_DATES,
    "start": BAD_INSTANTS,
    "end": BAD_INSTANTS,
    "object_name": ["Opportunityy", "opportunity", "erp.customers"],
    "table": ["nope", "salesforce.Account", "erp.nope"],
    "dsn": ["host=x port", "dbname='unterminated", "postgresql://[bad"],
    "lake": ["http://example.com/lake", "gs://bucket/lake", " "],
    "suite": ["no.such.suite"],
    "by": [" "],
    "note": [""],
    "fmt": ["xml", "csv", ""],
}
# Valid values for required parameters, so that the one under test is the only mistake.
GOOD = {"object_name": "Opportunity", "start": "2026-12-01", "end": "2026-12-02", "alert_id": "1"}

ROOT = typer.main.get_command(app)


def _commands(cmd=ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = [(path, cmd) for path, cmd in _commands() if path]
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not getattr(cmd, "commands", None)]


def _base_type(param) -> type:
    annotation = param.type_descriptor.annotation
    args = (
        [a for a in typing.get_args(annotation) if a is not type(None)]
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else [annotation]
    )
    (base,) = args
    if typing.get_origin(base) is list:
        (base,) = typing.get_args(base)
    return base


def _bad_values(param) -> list[str]:
    if getattr(param, "is_flag", False):
        return []
    base = _base_type(param)
    if base is int:
        bad = ["abc", "1.5"]
        return bad + ([str(param.min - 1)] if param.min is not None else [])
    if isinstance(base, type) and issubclass(base, Enum):
        return ["bogus"]
    assert param.name in BAD, f"option {param.opts or param.name} has no bad values in BAD: add them"
    return BAD[param.name]


def _argv(path: tuple[str, ...], cmd, tested, value: str) -> list[str]:
    """The command with valid required parameters, and ``value`` for ``tested``."""
    positional, options = [], []
    for p in cmd.params:
        given = value if p is tested else GOOD.get(p.name) if p.required else None
        if given is None:
            continue
        if p.param_type_name == "argument":
            positional.append(given)
        else:
            options += [p.opts[0], given]
    return [*path, *positional, *options]


CASES = [
    pytest.param(argv, id=" ".join(argv))
    for path, cmd in COMMANDS
    for p in cmd.params
    if p.expose_value
    for value in _bad_values(p)
    for argv in [_argv(path, cmd, p, value)]
]
CASES += [
    pytest.param([*path, *_argv((), cmd, None, ""), extra], id=" ".join([*path, extra]))
    for path, cmd in LEAVES
    for extra in ("--no-such-option", "unexpected-argument")
]


@pytest.fixture()
def runner(monkeypatch, tmp_path) -> CliRunner:
    """No profile, no stack, no warehouse: a command that got past its input would fail otherwise."""
    monkeypatch.setenv("TALLY_HOME", str(tmp_path / "home"))
    for name in ("TALLY_PROFILE", "TALLY_WAREHOUSE_DSN", "TALLY_SF_USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def touched(*_args, **_kwargs):
        raise AssertionError("the command ran past its input checks")

    import psycopg

    from tally_local.stack import manager

    monkeypatch.setattr(psycopg, "connect", touched)
    for method in ("up", "down", "status", "_save"):
        monkeypatch.setattr(manager.Stack, method, touched)
    return CliRunner()


def _assert_one_line_exit_2(result) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def test_every_command_is_enumerated():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {
        "run",
        "reconcile",
        "docs",
        "extract salesforce",
        "alerts list",
        "alerts show",
        "alerts ack",
        "up",
        "down",
        "status",
        "seed",
        "demo",
        "env",
    } <= names
    assert len(CASES) > 100


@pytest.mark.parametrize("argv", CASES)
def test_bad_input_is_one_line_and_exit_2(runner, argv):
    _assert_one_line_exit_2(runner.invoke(app, argv))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["reconcile", "--ds", "2026-13-45"],
            "error: --ds must be a real date as YYYY-MM-DD, got '2026-13-45'",
        ),
        (
            ["alerts", "list", "--ds", "2026-99-99"],
            "error: --ds must be a real date as YYYY-MM-DD, got '2026-99-99'",
        ),
        (["run", "--ds", "yesterday"], "error: --ds must be a date as YYYY-MM-DD, got 'yesterday'"),
        (["seed", "--as-of", "20261202"], "error: --as-of must be a date as YYYY-MM-DD, got '20261202'"),
        (["reconcile"], "error: --ds is required (or --full)"),
        (
            ["reconcile", "--ds", "2026-12-01", "--table", "customers"],
            "error: --table applies with --full only",
        ),
        (
            [
                "extract",
                "salesforce",
                "--object",
                "Opportunity",
                "--start",
                "2026-12-02",
                "--end",
                "2026-12-01",
            ],
            "error: --end must be after --start",
        ),
        (["status", "--format", "xml"], "error: --format must be one of table, json, tsv, got 'xml'"),
    ],
)
def test_the_line_names_the_expected_form(runner, argv, expected):
    result = runner.invoke(app, argv)
    _assert_one_line_exit_2(result)
    assert result.stderr.startswith(expected)


def test_a_bad_dsn_from_the_environment_is_caught_too(runner, monkeypatch):
    monkeypatch.setenv("TALLY_WAREHOUSE_DSN", "host=x port")
    for argv in (["alerts"], ["alerts", "list"], ["alerts", "show", "1"], ["alerts", "ack", "1"]):
        result = runner.invoke(app, argv)
        _assert_one_line_exit_2(result)
        assert "must be a libpq conninfo" in result.stderr


@pytest.mark.parametrize("path", [pytest.param(path, id=" ".join(path)) for path, _ in COMMANDS])
def test_help_still_works(runner, path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_no_arguments_still_shows_the_help(runner):
    result = runner.invoke(app, [])
    assert "Usage" in result.output and "reconcile" in result.output
    assert "error:" not in result.output
