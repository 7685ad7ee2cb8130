"""Runs: every scoring run and background job of this store, newest first."""
import pandas as pd
import streamlit as st

from db import jobs
from pages import shared
from scar_core.jobs import overview

store = shared.store()
st.header("Runs")
jobs.mark_stale(store)
rows = overview.history(store)
if not rows:
    st.info("Nothing has run yet: score a data set on the Rank page.")
    st.stop()
st.dataframe(pd.DataFrame(rows), hide_index=True,
             column_config={"created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                            "finished": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
if any(r["started by"] == overview.NOBODY for r in rows):
    st.caption(f"\"{overview.NOBODY}\": this store kept no name with those runs and jobs.")
