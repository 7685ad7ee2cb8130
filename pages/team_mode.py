"""Team mode in the app: its configuration (`[scar]` and Streamlit's `[auth]` in .streamlit/secrets.toml,
README "Team mode"), the sign-in every page shows until someone has signed in (Streamlit's st.login /
st.user, OpenID Connect through Authlib), and which pages each role sees. Who may do what is decided
in scar_core.jobs.access; this only asks it."""
from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from db.store import Store, open_store, resolve_url
from scar_core.errors import ScarError
from scar_core.jobs import access

log = logging.getLogger("scar_studio")
# The action a page is for; a page not listed here (a new one) is shown to leads and admins only.
PAGE_NEEDS = {"Datasets": "run", "Rank": "run", "Explore": "label", "Select": "select", "Compare runs": "compare",
              "Export": "export", "Train": "train", "Audit": "audit", "Team": "assign"}


def identity() -> str | None:
    """The signed-in person of the session being served, or None: their e-mail, unless the provider says it
    is not verified (anyone could claim an admin's address there), else the provider's subject."""
    try:
        user = st.user.to_dict()
    except Exception:  # no session: a thread outside any page run has no one signed in
        return None
    if not user.get("is_logged_in"):
        return None
    email = user.get("email") if user.get("email_verified", True) is not False else None
    return str(email or user.get("sub") or "") or None


def gate() -> None:
    """Local mode: nothing. Team mode: refuse to serve a misconfigured server; show only a sign-in until
    someone has signed in; then act as that person in every action (scar_core.jobs.access)."""
    scar = access.team_settings(st.secrets) if st.secrets.load_if_toml_exists() else None
    if scar is None:
        access.leave_team_mode()
        return
    trouble = access.configuration_problems(st.secrets, st.get_option("server.enableXsrfProtection"))
    if trouble:
        log.error("team mode is on but not configured, nothing is served: %s", "; ".join(trouble))
        _only(lambda: st.error("This SCAR Studio server is in team mode but its configuration is incomplete, so "
                               "it serves nothing. The administrator finds what is missing in the server log."))
    st.set_option("client.showErrorDetails", "none")  # an error Streamlit shows itself: no trace, no path
    try:
        store = open_store(resolve_url())
    except ScarError as e:
        log.error("team mode: %s", e)
        _only(lambda: st.error("The store does not open. The administrator finds why in the server log."))
    folders = tuple(Path(folder).expanduser() for folder in scar.get("data_folders", []))
    access.enter_team_mode(store, access.Team(who=identity, first_admin=str(scar["first_admin"]).strip(),
                                              data_folders=folders))
    if identity() is None:
        _only(_sign_in)


def _sign_in() -> None:
    st.title("SCAR Studio")
    st.write("Sign in to continue.")
    st.button("Sign in", type="primary", on_click=st.login, key="sign_in")


def _only(show) -> None:
    """Serve nothing but `show`, whatever page was asked for: a one-page navigation with no menu (without
    a navigation of its own Streamlit would list the files of pages/ in the sidebar), then stop."""
    st.navigation([st.Page(show, title="SCAR Studio", url_path="welcome", default=True)], position="hidden").run()
    st.stop()


def signed_in_box(store: Store) -> None:
    """The sidebar's line in team mode: who is signed in, as what, and a way out."""
    me = access.signed_in(store)
    if me:
        st.caption(f"Signed in as {me[0]} ({me[1]})")
        st.button("Sign out", on_click=st.logout, key="sign_out")


def pages(folder: Path, listed: list[tuple[str, str]]) -> list:
    """st.Page for each (file in `folder`, title) of `listed` that the signed-in person's role is for, the
    first one the default; in local mode every page but those of team mode (Audit, Team). Chosen by the
    titles given here, not read back from st.Page (which has none when app.py is imported outside a
    running app, as a worker process spawned from a test can do)."""
    if access.team() is None:
        kept = [(f, title) for f, title in listed if title not in ("Audit", "Team")]
    else:
        store = open_store(resolve_url())
        kept = [(f, title) for f, title in listed if access.may(store, PAGE_NEEDS.get(title, "run"))]
    return [st.Page(folder / f, title=title, default=n == 0) for n, (f, title) in enumerate(kept)]
