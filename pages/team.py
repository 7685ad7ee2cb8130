"""Team (admins, team mode): give people roles and assign data sets to annotators. Changes go through
scar_core.jobs.access (set_role, assign), which refuses anyone but an admin and logs each change."""
import pandas as pd
import streamlit as st

from db import datasets
from pages import shared
from scar_core.errors import ScarError
from scar_core.jobs import access

store = shared.store()
st.header("Team")
if "team_said" in st.session_state:  # what the last change did, kept across the rerun that redraws the table
    st.success(st.session_state.pop("team_said"))
st.caption("Annotators label the data sets assigned to them; leads also adjudicate, run, select, export, "
           "compare and validate on every data set; admins also import and delete data sets and manage the team. "
           "Someone who signs in for the first time is an annotator with no data sets.")
roster = access.roster(store)
st.dataframe(pd.DataFrame(roster, columns=["identity", "role", "data sets"]), hide_index=True, key="team_table")

st.subheader("Role")
with st.form("role_form"):
    who = st.text_input("Identity (the e-mail they sign in with)", key="role_identity")
    role = st.selectbox("Role", access.ROLES, key="role_choice")
    if st.form_submit_button("Set role"):
        try:
            access.set_role(store, who, role)
        except ScarError as e:
            shared.error(str(e))
        else:
            st.session_state["team_said"] = f"{who.strip()} is now {role}."
            st.rerun()

st.subheader("Data sets")
items = datasets.list_datasets(store)
if not roster or not items:
    st.info("Assigning needs at least one person and one data set.")
    st.stop()
with st.form("assign_form"):
    person = st.selectbox("Person", [p["identity"] for p in roster], key="assign_identity")
    names = {d.id: f"#{d.id} {d.name}" for d in items}
    dataset_id = st.selectbox("Data set", list(names), format_func=names.get, key="assign_dataset")
    how = st.radio("Action", ["assigned", "unassigned"], horizontal=True, key="assign_how", label_visibility="collapsed",
                   format_func={"assigned": "Assign", "unassigned": "Take back"}.get)
    if st.form_submit_button("Apply"):
        try:
            access.assign(store, person, dataset_id, how)
        except ScarError as e:
            shared.error(str(e))
        else:
            st.session_state["team_said"] = f"Data set #{dataset_id} {how} {'to' if how == 'assigned' else 'from'} {person}."
            st.rerun()
