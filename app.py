"""SCAR Studio: `streamlit run app.py`."""
import streamlit as st

st.set_page_config(page_title="SCAR Studio", layout="wide")
st.title("SCAR Studio")
st.write("Rank instruction-tuning data by response style consistency.")
