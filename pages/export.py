"""Export: a saved selection as JSONL (Alpaca, ShareGPT or messages), downloaded or written to a folder,
always with its manifest; or downloaded as one zip with its three matched baselines (an ablation bundle)."""
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from db import browse
from pages import shared
from scar_core.errors import ScarError
from scar_core.export import export_target, safe_filename
from scar_core.jobs import access, score as scoring, selection
from scar_core.jobs.export import ExportPackage
from scar_core.labels import steps_in_words

store, run = shared.page_run("Export", finished_only=True)
saved = selection.saved(store, run.id, versions=True)
if not saved:
    st.info("No saved selections for this run yet: make one on the Select page.")
    st.stop()
latest_version = {s.name: s.version for s in saved}
names = {s.id: f"#{s.id} {s.name} v{s.version}" + ("" if s.version == latest_version[s.name] else " (replaced)")
               + f" ({len(s.example_ids)} rows, {s.rule}, saved {s.created_at:%Y-%m-%d %H:%M})" for s in saved}
current = st.session_state.get("selection")
latest = max(saved, key=lambda s: (s.created_at, s.id)).id  # the one saved last, unless one was just chosen
selection_id = st.selectbox("Selection", list(names), format_func=names.get, key="_selection",
                            index=list(names).index(current if current in names else latest))
st.session_state["selection"] = selection_id
chosen = selection.saved_one(store, selection_id)
if chosen.version != latest_version[chosen.name]:
    st.info(f"Version {chosen.version} of '{chosen.name}' was replaced by version "
            f"{latest_version[chosen.name]}; this exports version {chosen.version} as it was saved.")
sample = scoring.scope_note(store, run)
if sample:
    st.warning(f"This run scored a random {sample} of its data set: this selection is a cut "
               "of that sample, not of the whole data set. The manifest says so.")
applied = chosen.params.get("labels")
if applied:
    st.caption(f"Labels applied under the policy '{applied['policy']}' when this was saved: "
               f"{steps_in_words(applied['rows'])}.")
sample_ok = not sample or st.checkbox("Export this cut of a sample anyway", key="export_sample")
fmt = st.radio("Shape", ["alpaca", "sharegpt", "messages"], horizontal=True, key="export_format",
               format_func={"alpaca": "Alpaca", "sharegpt": "ShareGPT", "messages": "OpenAI messages"}.get)
with_scores = st.checkbox("Add each row's score", key="with_scores")
st.caption("Rows are written best first.")
package = ExportPackage(store, run, chosen, fmt, with_scores, table=shared.run_table(store, run.id),
                        space=lambda: shared.run_space(store, run.id))
version = f"-v{chosen.version}" if chosen.version > 1 else ""
base = safe_filename(f"{Path(package.dataset.name).stem}-{chosen.name}{version}-{fmt}")

left, right = st.columns(2)
left.download_button("Download JSONL", package.jsonl, file_name=base, mime="application/jsonl",
                     on_click="ignore", type="primary", key="download_jsonl", disabled=not sample_ok)
right.download_button("Download manifest", package.manifest_json, file_name=base + ".manifest.json",
                      mime="application/json", on_click="ignore", key="download_manifest", disabled=not sample_ok)

st.subheader("Bundle for an ablation run")
problem = package.bundle_problem()
if problem:
    st.info(problem)
else:
    seed = chosen.params.get("seed", 0)
    coverage = (chosen.params.get("ordering") or {}).get("coverage")
    st.caption(f"The cut and its three matched baselines of the same size, under the same cleaning, quotas and labels: "
               f"random (seed {seed}), the longest responses, and random within the cut's length bins. Four JSONL "
               "files and one manifest listing them, how each was made and the evidence comparing them, as `rank "
               + (f"--coverage {coverage:g} " if coverage else "") + f"--baselines --seed {seed}` writes them.")
    st.download_button("Download the bundle (zip)", partial(package.bundle, base),
                       file_name=base.removesuffix(".jsonl") + "-bundle.zip", mime="application/zip",
                       on_click="ignore", key="download_bundle", disabled=not sample_ok)

exports_folder = browse.export_folder(store)
team = access.team() is not None  # team mode: files go into the exports folder, and no server path is shown


def shown(path: str | Path) -> str:
    """A written file as the page names it: in team mode relative to the exports folder."""
    path = Path(path)
    return str(path.relative_to(exports_folder)) if team and path.is_relative_to(exports_folder) else str(path)


st.subheader("Write to the exports folder on the server" if team else "Write to a folder on the server")
with st.form("write_export"):
    folder = st.text_input("Subfolder of the exports folder" if team else "Folder", value="" if team else str(exports_folder),
                           key="export_folder")
    name = st.text_input("File name (made safe: letters, digits, . _ - only)", value=base, key="export_name")
    if st.form_submit_button("Write", disabled=not sample_ok):
        try:
            written = package.write(export_target(str(exports_folder / folder) if team else folder, name))
            st.success("Wrote the export and its manifest:")
            st.code(f"{shown(written.path)}\n{shown(written.manifest_path)}", language=None)
        except ScarError as e:
            shared.error(str(e))

past = selection.exports(store, run.id)
if past:
    st.subheader("Earlier exports")
    st.dataframe(pd.DataFrame([{"path": shown(e.path), "format": e.format, "rows": e.manifest.get("rows"),
                                "written": e.created_at} for e in past]), hide_index=True)
