"""Export: a saved selection as JSONL (Alpaca, ShareGPT or messages), downloaded or written to a folder,
always with its manifest."""
from pathlib import Path

import pandas as pd
import streamlit as st

from db import browse, selections
from pages import shared
from scar_core.errors import ScarError
from scar_core.export import export_target, safe_filename
from scar_core.jobs.export import ExportPackage

store, run = shared.page_run("Export", finished_only=True)
saved = selections.list_selections(store, run.id)
if not saved:
    st.info("No saved selections for this run yet: make one on the Select page.")
    st.stop()
names = {s.id: f"#{s.id} {s.name} ({len(s.example_ids)} rows, {s.rule}, saved {s.created_at:%Y-%m-%d %H:%M})"
         for s in saved}
current = st.session_state.get("selection")
latest = max(saved, key=lambda s: (s.created_at, s.id)).id  # the one saved last, unless one was just chosen
selection_id = st.selectbox("Selection", list(names), format_func=names.get, key="_selection",
                            index=list(names).index(current if current in names else latest))
st.session_state["selection"] = selection_id
selection = selections.get_selection(store, selection_id)
fmt = st.radio("Shape", ["alpaca", "sharegpt", "messages"], horizontal=True, key="export_format",
               format_func={"alpaca": "Alpaca", "sharegpt": "ShareGPT", "messages": "OpenAI messages"}.get)
with_scores = st.checkbox("Add each row's score", key="with_scores")
st.caption("Rows are written best first.")
package = ExportPackage(store, run, selection, fmt, with_scores)
base = safe_filename(f"{Path(package.dataset.name).stem}-{selection.name}-{fmt}")

left, right = st.columns(2)
left.download_button("Download JSONL", package.jsonl, file_name=base, mime="application/jsonl",
                     on_click="ignore", type="primary", key="download_jsonl")
right.download_button("Download manifest", package.manifest_json, file_name=base + ".manifest.json",
                      mime="application/json", on_click="ignore", key="download_manifest")

st.subheader("Write to a folder on the server")
with st.form("write_export"):
    folder = st.text_input("Folder", value=str(browse.export_folder(store)), key="export_folder")
    name = st.text_input("File name (made safe: letters, digits, . _ - only)", value=base, key="export_name")
    if st.form_submit_button("Write"):
        try:
            written = package.write(export_target(folder, name))
            st.success("Wrote the export and its manifest:")
            st.code(f"{written.path}\n{written.manifest_path}", language=None)
        except ScarError as e:
            shared.error(str(e))

past = selections.list_exports(store, run.id)
if past:
    st.subheader("Earlier exports")
    st.dataframe(pd.DataFrame([{"path": e.path, "format": e.format, "rows": e.manifest.get("rows"),
                                "written": e.created_at} for e in past]), hide_index=True)
