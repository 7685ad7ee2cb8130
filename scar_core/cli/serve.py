"""`serve [STREAMLIT OPTIONS...]`: start the app (`streamlit run app.py` with these options, in app.py's
folder so its .streamlit/ settings apply), but refuse to start a team-mode server whose configuration is
incomplete: no cookie secret, no provider, no first admin, XSRF protection off (README "Team mode")."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from scar_core.errors import ScarError
from scar_core.jobs import access

APP = Path(__file__).resolve().parents[2] / "app.py"


def add(sub) -> None:
    p = sub.add_parser("serve", help="start the app; in team mode only when its configuration is complete",
                       description=__doc__)
    p.set_defaults(run=run)  # every other option goes to `streamlit run`, e.g. --server.port 8501


def run(args: argparse.Namespace) -> int:
    if not APP.is_file():
        raise ScarError(f"serve starts the app from a checkout of SCAR Studio, and {APP.name} is not beside "
                        f"scar_core here ({APP.parent})")
    os.chdir(APP.parent)
    problems = team_problems(args.options)
    if problems:
        raise ScarError("team mode is on but its configuration is incomplete, so the server does not start: "
                        + "; ".join(problems) + ' (README "Team mode")')
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(APP), *args.options])


def team_problems(options: list[str]) -> list[str]:
    """What the team configuration the server would read lacks (empty in local mode): Streamlit's own
    reading of its config files, secrets files and these command-line options, as `streamlit run` does."""
    import streamlit as st
    from streamlit.web import bootstrap, cli

    context = cli.main_run.make_context("run", [str(APP), *options])
    bootstrap.load_config_options({k: v for k, v in context.params.items() if k not in ("target", "args")})
    if not st.secrets.load_if_toml_exists():
        return []
    if access.team_settings(st.secrets) is None:
        return []
    return access.configuration_problems(st.secrets, st.get_option("server.enableXsrfProtection"))
