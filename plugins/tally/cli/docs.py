"""`tally docs`: the Great Expectations Data Docs site, path and URL (opened when there is a display)."""

from __future__ import annotations

from typing import Annotated

import typer

from tally.cli.common import console
from tally.cli.output import print_line
from tally.cli.params import SuiteOption


def _can_open_browser() -> bool:
    """A browser that will not take over this terminal: a desktop session, or $BROWSER."""
    import os
    import sys

    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("BROWSER"))
            or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))


def docs_cmd(
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in a browser (skipped without a "
                                                                         "display).")] = True,
    failed: Annotated[bool, typer.Option("--failed", help="The newest failed validation's page, not the index.")]
    = False,
    suite: SuiteOption = None,
) -> None:
    """Great Expectations Data Docs: every gate's validation results, newest first.

    A static site under $TALLY_HOME/data_docs (TALLY_DATA_DOCS_DIR), updated by each gate. It loads
    nothing from the internet (bootstrap, jQuery and the icons are copied into the site), so it works
    from file://, any web server, or a copy of the folder. Prints the page's path and file:// URL (the
    last line); opens it unless --no-open or headless.
    """
    from tally.quality import docs

    index = docs.index_path()
    if not index.exists():
        console.print(f"No gate has written Data Docs in {index.parent} yet: building the index and the suites' "
                      "pages (imports Great Expectations, ~10 s).")
        docs.build_index()
    elif not docs.offline_ready():
        console.print("Data Docs were written by an older Tally: copying their CSS, scripts and fonts into the "
                      "site and rewriting the pages to use them, so they work offline (once).")
        docs.build_index()
    target = index
    if failed or suite:
        entries = docs.latest(suite=suite, failed_only=failed)
        if entries:
            target = index.parent / entries[0]["filepath"]
            state = "passed" if entries[0]["validation_success"] else "FAILED"
            console.print(f"{entries[0]['expectation_suite_name']} ds={entries[0]['run_name']} {state} at "
                          f"{entries[0]['run_time']}")
        else:
            console.print("[yellow]No such validation in the index[/yellow]; showing the index.")
    print_line(f"Data Docs: {target}", markup=False)
    typer.echo(target.as_uri())
    if open_browser:
        import webbrowser

        if not (_can_open_browser() and webbrowser.open(target.as_uri())):
            console.print("[dim]No browser here (no display): open the URL above, or copy the folder.[/dim]")


def register(app: typer.Typer) -> None:
    app.command("docs")(docs_cmd)
