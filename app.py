"""SCAR Studio: `streamlit run app.py`. The store is $SCAR_DB_URL (default ./scar_studio.db)."""
from pathlib import Path

import streamlit as st

from pages import shared, team_mode

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="SCAR Studio", layout="wide")
team_mode.gate()  # team mode: only a sign-in until signed in (README "Team mode")
shared.sidebar()
navigation = st.navigation(team_mode.pages(PAGES, [
    ("home.py", "Start"), ("datasets.py", "Datasets"), ("rank.py", "Rank"), ("explore.py", "Explore"),
    ("select.py", "Select"), ("compare.py", "Compare runs"), ("export.py", "Export"), ("train.py", "Train"),
    ("runs.py", "Runs"), ("audit.py", "Audit"), ("team.py", "Team"),
]))

shared.guarded(navigation.run)
