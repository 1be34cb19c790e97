"""The `tally` command for on-call: run the daily job, backfill a range, reconcile, extract, alerts, Data Docs.

One module per command group (``run``, ``backfill``, ``reconcile``, ``extract``, ``docs``, ``alerts``,
``lake``), each with a ``register(app)``; ``common`` holds the console and the profile lookup, ``params`` the option
types that validate input (and the one handler turning a user's mistake into one line and exit 2),
``output`` the table/json/tsv printing, ``airflow_api`` the REST client `tally run` uses. Commands
reach a deployment through its profile (``tally.core.profile``: ``$TALLY_PROFILE`` or
``$TALLY_HOME/profile.json``). More commands come from installed packages
through the ``tally.commands`` entry point group: the local rig (``tally_local``, the ``local``
extra) adds ``up``, ``down``, ``status``, ``seed``, ``demo`` and ``env``.
"""

from __future__ import annotations

import typer

from tally.cli import alerts, backfill, docs, extract, lake, reconcile, run
from tally.cli.params import TallyGroup

# TallyGroup: a user's mistake (a bad date, a missing option) is one `error: …` line and exit 2.
app = typer.Typer(cls=TallyGroup, help="Tally: every row accounted for, source to mart.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)

for _group in (run, backfill, reconcile, extract, docs, alerts, lake):
    _group.register(app)


def _add_plugin_commands() -> None:
    """Let installed packages add commands (the ``tally.commands`` entry point group): each entry
    point names a function that takes this Typer app. The local rig registers ``tally_local.cli``."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="tally.commands"):
        try:
            register = entry.load()
        except ImportError as exc:  # the plugin's own dependencies are not installed
            typer.echo(f"tally: the {entry.name!r} commands are unavailable: {exc}", err=True)
            continue
        register(app)


_add_plugin_commands()


if __name__ == "__main__":
    app()
