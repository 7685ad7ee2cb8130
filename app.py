"""SCAR Studio: `streamlit run app.py`. The store is $SCAR_DB_URL (default ./scar_studio.db)."""
from pathlib import Path

import streamlit as st

from pages import shared, team_mode

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="SCAR Studio", layout="wide")
team_mode.gate()  # team mode: only a sign-in until signed in (README "Team mode")
shared.sidebar()
navigation = st.navigation(team_mode.pages([
    st.Page(PAGES / "home.py", title="Start", default=True),
    st.Page(PAGES / "datasets.py", title="Datasets"),
    st.Page(PAGES / "rank.py", title="Rank"),
    st.Page(PAGES / "explore.py", title="Explore"),
    st.Page(PAGES / "select.py", title="Select"),
    st.Page(PAGES / "compare.py", title="Compare runs"),
    st.Page(PAGES / "export.py", title="Export"),
    st.Page(PAGES / "train.py", title="Train"),
    st.Page(PAGES / "runs.py", title="Runs"),
    st.Page(PAGES / "audit.py", title="Audit"),
    st.Page(PAGES / "team.py", title="Team"),
]))

shared.guarded(navigation.run)
