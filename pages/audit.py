"""Audit (leads and admins, team mode): who labelled, adjudicated, selected, exported, imported, deleted
and assigned what, and when, newest first, with every refused attempt; from the label history and
the action log (scar_core.jobs.access.audit, which refuses anyone else)."""
import pandas as pd
import streamlit as st

from pages import shared
from scar_core.jobs import access

store = shared.store()
st.header("Audit")
entries = pd.DataFrame(access.audit(store), columns=["when", "who", "action", "what", "allowed"])
people = st.multiselect("Who", sorted(set(entries["who"])), key="audit_who")
refused_only = st.checkbox("Refused attempts only", key="audit_refused")
keep = entries["who"].isin(people) if people else pd.Series(True, index=entries.index)
shown = entries[keep & ~entries["allowed"].astype(bool)] if refused_only else entries[keep]
st.caption(f"{len(shown)} of the latest {len(entries)} entries")
st.dataframe(shown, hide_index=True, key="audit_table")
st.download_button("Download the audit (CSV)", shown.to_csv(index=False).encode(), file_name="scar-audit.csv",
                   mime="text/csv", on_click="ignore", key="audit_csv")
