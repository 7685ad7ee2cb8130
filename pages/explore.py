"""Explore: maps of both style spaces, the ranked table with filters, one example shown inert, labels."""
import numpy as np
import pandas as pd
import streamlit as st

from db import browse, datasets, jobs, labels, maps, runs, selections
from pages import shared
from scar_core import plots
from scar_core.jobs import map as map_job, selection
from scar_core.select import rank_and_percentile
from scar_core.diagnostics.table import PART_LABELS, PARTS, dominance_note, ordered, parts_equation, score_parts
from scar_core.display import snippet, visible

store, run = shared.page_run("Explore")
done = runs.count_done(store, run.id)
if done == 0:
    st.info("This run has no scores yet; watch its progress on the Rank page.")
    st.stop()


@st.cache_data(max_entries=8, show_spinner=False)
def layout(url: str, run_id: int, space: str, version: int) -> dict:
    return maps.map_points(store, run_id, space)


@st.cache_data(max_entries=8, show_spinner=False)
def run_parts(url: str, run_id: int, rows: int) -> dict:
    """The varying parts of every score of the run (cached until the run gains rows)."""
    return runs.run_figures(store, run_id, PARTS[1:])


table = shared.run_table(store, run.id)
table["label"] = table["example_id"].map(browse.run_labels(store, run.id))
scores = table["score"].to_numpy()
run_flags = dict(zip(table["example_id"], table["flags"]))

# ---- maps -----------------------------------------------------------------------------------------
st.subheader("Style maps")
map_state = map_job.latest_map_job(store, run.id)
selection_names = {s.id: s.name for s in selections.list_selections(store, run.id)}
colour = st.radio("Colour by", ["score", "selection", "source", "label"], horizontal=True, key="map_colour")
chosen_selection = None
if colour == "selection" and selection_names:
    chosen_selection = st.selectbox("Saved selection", list(selection_names), format_func=selection_names.get,
                                    key="map_selection")
if map_state is None or map_state.status in ("failed", "cancelled", "interrupted"):
    if map_state is not None and map_state.error:
        shared.error(f"The last map job {map_state.status}: {map_state.error.splitlines()[0]}")
    if st.button("Compute maps (UMAP of v_lf and v_is, stored for later visits)", key="compute_maps",
                 disabled=run.status != "done"):
        map_job.submit_map(store, run.id)
        st.rerun()
elif map_state.status in ("queued", "running"):
    @st.fragment(run_every=1.0)
    def map_progress() -> None:
        job = jobs.get_job(store, map_state.id)
        if job.status not in ("queued", "running"):
            st.rerun()
        st.progress(job.done / job.total if job.total else 0.0, text=f"map job: {job.message or job.status}")
    map_progress()
else:
    st.caption(f"Maps stored by job {map_state.id} ({map_state.result.get('method', '?')}, "
               f"{map_state.result.get('rows', '?')} rows). Draw a box or lasso on a map to filter the table.")
    in_selection = set(selections.get_selection(store, chosen_selection).example_ids) if chosen_selection else set()
    label_of = browse.run_labels(store, run.id)
    generation = st.session_state.get("map_generation", 0)  # a new key resets the charts' selections
    for space, column in zip(("lf", "is"), st.columns(2)):
        points = layout(store.url, run.id, space, map_state.id)
        ids = points["example_id"]
        if colour == "score":
            values, continuous = points["score"], True
        elif colour == "source":
            values, continuous = points["source"], False
        elif colour == "label":
            values, continuous = np.array([label_of.get(i) or plots.UNLABELLED for i in ids], dtype=object), False
        else:
            values, continuous = np.where(np.isin(ids, list(in_selection)), "selected", "not selected"), False
        title = "Linguistic form (v_lf)" if space == "lf" else "Instructional surprisal (v_is)"
        with column:
            hover = plots.point_hover(points["instruction"], points["response"], points["score"])
            event = st.plotly_chart(plots.style_map(points["x"], points["y"], ids, values, title, continuous,
                                                    hover=hover, labelled=label_of if colour != "label" else ()),
                                    on_select="rerun", selection_mode=("box", "lasso"),
                                    key=f"map_{space}_{generation}", config={"displaylogo": False})
            picked = [int(p["customdata"]) for p in event.selection.points if "customdata" in p]
            if picked:
                st.session_state["map_ids"] = picked
    if st.session_state.get("map_ids") and st.button("Clear map selection", key="clear_map"):
        st.session_state.pop("map_ids")
        st.session_state["map_generation"] = generation + 1
        st.rerun()

# ---- table ----------------------------------------------------------------------------------------
st.subheader("Ranked examples")
dataset_sources = datasets.sources(store, run.dataset_id)
f1, f2, f3, f4 = st.columns([3, 2, 2, 2])
search = f1.text_input("Search instruction and response", key="search").strip() or None
source = f2.selectbox("Source", ["(all)", *dataset_sources], key="source_filter")
flag = f3.selectbox("Cleaning flag", ["(any)", *selection.flag_names(table)], key="flag_filter")
label = f4.selectbox("Label", ["(any)", "keep", "drop", "flag", "none"], key="label_filter")
low, high = float(scores.min()), float(scores.max())
score_range = st.slider("Score range", low, max(high, low + 1e-6), (low, max(high, low + 1e-6)), key="score_range")
map_ids = st.session_state.get("map_ids")
if flag != "(any)":
    flagged = selection.flagged_ids(table, flag)
    map_ids = flagged if map_ids is None else sorted(set(map_ids) & set(flagged))
where = runs.ResultFilter(search=search, score_min=score_range[0] if score_range[0] > low else None,
                          score_max=score_range[1] if score_range[1] < high else None,
                          source=None if source == "(all)" else source,
                          label=None if label == "(any)" else label, ids=map_ids)
s1, s2, s3 = st.columns(3)
sort = s1.selectbox("Sort", runs.SORTS, format_func={"score_desc": "best first", "score_asc": "worst first",
                                                      "position": "file order"}.get, key="sort")
size = s2.selectbox("Rows per page", [25, 50, 100, 200], index=1, key="page_size")
matching = runs.count_results(store, run.id, where)
pages = max(1, -(-matching // size))
page = s3.number_input(f"Page (of {pages})", 1, pages, 1, key="page")
st.caption(f"{matching} of {done} scored examples match" + (f" ({len(map_ids)} picked on a map)" if map_ids else ""))
rows = runs.results_page(store, run.id, where, sort=sort, offset=(page - 1) * size, limit=size)
ranked = rank_and_percentile(scores, [r["score"] for r in rows])
grid = pd.DataFrame([{"rank": rk, "percentile": round(pct, 1), "score": r["score"], "source": r["source"],
                      "label": r["label"], "flags": run_flags.get(r["example_id"], ""),
                      "instruction": snippet(r["instruction"], 120), "response": snippet(r["response"], 160)}
                     for r, (rk, pct) in zip(rows, ranked)])
picked_row = st.dataframe(grid, hide_index=True, on_select="rerun", selection_mode="single-row", key="grid")

# ---- one example ----------------------------------------------------------------------------------
chosen_rows = [i for i in picked_row.selection.rows if i < len(rows)]  # a pick made on a longer table
if rows:
    row = rows[chosen_rows[0]] if chosen_rows else rows[0]
    rank, percentile = ranked[rows.index(row)]
    st.subheader(f"Example at rank {rank}")
    figures = {"score": row["score"], **runs.result_diagnostics(row)}
    m1, m2, m3 = st.columns(3)
    m1.metric("Score", f"{row['score']:.4f}")
    m2.metric("Rank", f"{rank} / {done}")
    m3.metric("Percentile", f"{percentile:.1f}")
    parts = score_parts(figures)
    if parts:
        st.caption(f"The score is the sum of these parts: {parts_equation(parts, row['score'])}")
        for column, (name, value) in zip(st.columns(len(parts)), parts.items()):
            column.metric(PART_LABELS[name], f"{value:.4f}", help=f"`{name}` in the score command's JSON lines")
        dominance = dominance_note(run_parts(store.url, run.id, done))
        if dominance:
            st.info(dominance)
    if "lm_nll" in figures:
        nll = figures["lm_nll"]
        measured = ("too little of it is its own text, not copied from the prompt, to measure, so that part "
                    "counts it as average" if nll is None else
                    f"this response's NLL is {nll:.3f} nats per token, text copied from the prompt left out "
                    "(lower scores higher)")
        st.caption(f"This ranker also scores by its LM's surprisal: {measured}. The form and surprisal "
                   "parts split the rest of the score around the starting point; the LM term's part is 0 "
                   "for a response of average NLL.")
    left, right = st.columns(2)
    with left:
        if row["system"]:
            st.caption("System prompt")
            st.code(visible(row["system"]), language=None, wrap_lines=True)
        for turn in row["context"] or []:
            st.caption(f"Earlier turn ({'user' if turn.get('role') == 'user' else 'assistant'})")
            st.code(visible(turn.get("content")), language=None, wrap_lines=True)
        st.caption("Instruction" + (" (truncated for the ranker)" if row["truncated_instruction"] else ""))
        st.code(visible(row["instruction"]), language=None, wrap_lines=True)
    with right:
        st.caption("Response" + (" (truncated for the ranker)" if row["truncated_response"] else ""))
        st.code(visible(row["response"]), language=None, wrap_lines=True)
    with st.expander("Diagnostics and cleaning flags"):
        st.json({"diagnostics": ordered(figures), "flags": row["flags"] or {}})
    with st.form(f"label_{row['example_id']}", clear_on_submit=False):
        verdict = st.radio("Your verdict", ["keep", "drop", "flag"], horizontal=True, key="verdict")
        note = st.text_area("Note", key="note", max_chars=2000)
        if st.form_submit_button("Save label"):
            if not shared.annotator():
                st.warning("Set your name in the sidebar first.")
            else:
                labels.set_label(store, row["example_id"], verdict, shared.annotator(), note or None)
                st.rerun()
    existing = labels.labels_for(store, [row["example_id"]])
    if existing:
        st.dataframe(pd.DataFrame([{"annotator": snippet(x.annotator, 60), "label": x.label,
                                    "note": snippet(x.note, 200), "when": x.created_at} for x in existing]),
                     hide_index=True)

# ---- distributions --------------------------------------------------------------------------------
st.subheader("Distributions")
h1, h2, h3 = st.columns(3)
h1.plotly_chart(plots.histogram(scores, "Score", "score"), key="hist_score")
for column, name in ((h2, "lf_contribution"), (h3, "is_contribution")):
    title = PART_LABELS[name]
    values = table[name].dropna().to_numpy(dtype=float)
    if len(values):
        column.plotly_chart(plots.histogram(values, title, title), key=f"hist_{name}")
    else:
        column.info(f"{title}: not computed for this run.")
st.plotly_chart(plots.score_vs_length(scores, table["words"].to_numpy()), key="score_length")
