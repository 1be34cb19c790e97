"""What every `tally` command shares: the console and the deployment's profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from tally.core.profile import Profile

console = Console()


def require_profile() -> Profile:
    """The deployment's profile; exits with a hint when there is none."""
    from tally.core import profile

    found = profile.load()
    if found is None:
        console.print(f"[red]No deployment profile at {profile.profile_path()}.[/red] Run [bold]tally up[/bold] "
                      "first (the local stack writes it), or point TALLY_PROFILE at a deployment's profile.")
        raise typer.Exit(1)
    return found
