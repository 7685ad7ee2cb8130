"""Start: what SCAR Studio does, the five steps of the flow with where this store stands on each, and links to them."""
import streamlit as st

from pages import shared
from scar_core.jobs import overview

store = shared.store()
st.header("SCAR Studio")
st.markdown("Chooses instruction-tuning data by **response style consistency** (SCAR, ACL 2025).  \n"
            "A ranker scores each instruction-response pair; responses in a consistent, LLM-like style rank high.  \n"
            "Keep the top few percent of a pool and fine-tune on that subset instead of all of it.")
st.subheader("Five steps")
for number, step in enumerate(overview.steps(store), 1):
    link, does, stands = st.columns([1, 3, 2], vertical_alignment="center")
    shared.page_link(link, f"pages/{step.page}", f"{number}. {step.name}", icon=":material/arrow_forward:")
    does.write(step.does)
    stands.caption(step.stands)
shared.page_link(st, "pages/runs.py", "Every run and job, with its state", icon=":material/history:")
