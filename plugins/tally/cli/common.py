"""What every `tally` command shares: the console (``tally.cli.output``) and the deployment's profile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from tally.cli.output import console

if TYPE_CHECKING:
    from tally.core.profile import AirflowApi, Profile

__all__ = ["airflow_login", "airflow_login_line", "console", "require_profile"]


def require_profile() -> Profile:
    """The deployment's profile; exits with a hint when there is none."""
    from tally.core import profile

    found = profile.load()
    if found is None:
        console.print(f"[red]No deployment profile at {profile.profile_path()}.[/red] Run [bold]tally up[/bold] "
                      "first (the local stack writes it), or point TALLY_PROFILE at a deployment's profile.")
        raise typer.Exit(1)
    return found


def airflow_login(api: AirflowApi) -> dict[str, str]:
    """Where Airflow's UI is and how to log in: the user and the file holding the password (the
    profile's ``password_file``, else the profile itself). Never the password."""
    from tally.core import profile

    password_file = api.password_file or str(profile.profile_path())
    return {"url": api.url, "user": api.user, "password_file": password_file}


def airflow_login_line(api: AirflowApi) -> str:
    login = airflow_login(api)
    return f"Airflow UI: {login['url']}  login: {login['user']}, password in {login['password_file']}"
