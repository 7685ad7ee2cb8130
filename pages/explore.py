"""Explore: linked maps of both style spaces, the ranked table with filters and a review queue, one
example rendered readably, and labelling at speed: keyboard shortcuts, save-and-next, bulk labels
with undo, agreement between annotators."""
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from db import datasets, jobs, maps, runs
from pages import shared
from scar_core import plots
from scar_core.diagnostics.table import (PART_LABELS, PARTS, against_data_set, dominance_note, parts_equation,
                                         score_parts)
from scar_core.errors import ScarError
from scar_core.display import code_css, markdown_escape, render_markdown, snippet, visible
from scar_core.jobs import access, labelling, map as map_job, selection, signals
from scar_core.jobs.score import scope_note
from scar_core.labels import LABELS, POLICIES, Resolution, agreement, review_queue
from scar_core.ranker import has_predicted_lm_term
from scar_core.select import rank_and_percentile

ORDERS = {"score_desc": "best first", "score_asc": "worst first", "position": "file order",
          "queue_best": "my review queue: not labelled by me, best first",
          "queue_random": "my review queue: not labelled by me, random order",
          "conflicts": "conflict queue: annotators disagree, no lead's decision yet"}
SHORTCUTS = {"keep": "K", "drop": "D", "flag": "F"}
# Every key that acts on the open example, by its button's widget key. Keys pressed faster than the page
# redraws can reach the server as one rerun, in which Streamlit runs their callbacks in widget order, not
# in the order pressed: K then D would then land as keep, drop or drop, keep. See `pressed_alone`.
EXAMPLE_KEYS = {**{f"label_{v}": k for v, k in SHORTCUTS.items()}, "previous": "P", "next": "J",
                "next_unlabelled": "N", "undo": "U"}
# Streamlit sets a chart's clickmode to "event" while it is in box or lasso mode (the maps' default): a
# click on a point then selects nothing, and plotly reports it only as an empty selection (no plotly_click
# either, as a drag may start there). This hands the point under the pointer on as a one-point selection,
# which map_selected opens. In pan mode a click already selects the point (clickmode event+select).
MAP_CLICKS = """
export default function() {
  if (window.__scarMapClicks) return;
  window.__scarMapClicks = true;
  const hook = (gd) => {
    if (gd.__scarClicks || typeof gd.on !== "function") return;
    gd.__scarClicks = true;
    let hovered = null;
    gd.on("plotly_hover", (event) => { hovered = event && event.points && event.points.length ? event.points : null; });
    gd.on("plotly_unhover", () => { hovered = null; });
    gd.on("plotly_selected", (event) => {
      const mode = gd._fullLayout && gd._fullLayout.dragmode;
      if (!event && hovered && (mode === "lasso" || mode === "select")) {
        const p = hovered[0];  // as a lasso reports a point: a hover's point also holds its axes (cyclic)
        gd.emit("plotly_selected", {points: [{curveNumber: p.curveNumber, pointNumber: p.pointNumber,
          pointIndex: p.pointIndex ?? p.pointNumber, x: p.x, y: p.y, customdata: p.customdata,
          data: p.data, fullData: p.fullData}]});
      }
    });
  };
  const scan = () => document.querySelectorAll('[class*="st-key-map_"] .js-plotly-plot').forEach(hook);
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true});
  scan();
}
"""

state = st.session_state
store, run = shared.page_run("Explore")
done = runs.count_done(store, run.id)
if done == 0:
    st.info("This run has no scores yet; watch its progress on the Rank page.")
    st.stop()
linked = shared.url_choice("example")  # a shared link's open example (?run=N&example=ID), if this run has it
if linked is not None and runs.results_page(store, run.id, runs.ResultFilter(ids=[linked]), limit=1):
    state["open_id"], state["opened_on_map"] = linked, False
me = shared.annotator()
scope_said = scope_note(store, run)
if scope_said:
    st.info(f"This run scored a random {scope_said} of its data set; the rest is not here.")


@st.cache_resource(show_spinner=False)
def map_clicks():
    """The mount command of the script that makes a click open a map's point in any mode (MAP_CLICKS),
    registered once per server."""
    return st.components.v2.component("scar_map_clicks", js=MAP_CLICKS)


@st.cache_data(max_entries=8, show_spinner=False)
def lm_term_predicted(model: str) -> bool:
    return has_predicted_lm_term(model)


@st.cache_data(max_entries=8, show_spinner=False)
def layout(url: str, run_id: int, space: str, version: int) -> dict:
    return maps.map_points(store, run_id, space)


@st.cache_data(max_entries=8, show_spinner=False)
def run_parts(url: str, run_id: int, rows: int) -> dict:
    """The varying parts of every score of the run (cached until the run gains rows)."""
    return runs.run_figures(store, run_id, PARTS[1:])


@st.cache_data(max_entries=16, show_spinner=False)
def ordered_ids(url: str, run_id: int, rows: int, where: runs.ResultFilter, sort: str = "score_desc") -> list[int]:
    """The run's example ids that `where` lets through, in this order (cached until the run gains rows:
    a labelling key redraws the table, and sorting 100k rows took about a second a key)."""
    return runs.result_ids(store, run_id, where, sort=sort)


@st.cache_data(max_entries=16, show_spinner=False)
def rows_of(url: str, run_id: int, rows: int, ids: tuple[int, ...]) -> dict[int, dict]:
    """The stored rows (texts, score, diagnostics) of these examples by id (cached like ordered_ids; labels
    are read fresh apart from them)."""
    if not ids:
        return {}
    return {r["example_id"]: r for r in runs.results_page(store, run_id, runs.ResultFilter(ids=list(ids)),
                                                            limit=len(ids))}


@st.cache_data(max_entries=8, show_spinner=False)
def data_set_figures(url: str, run_id: int, rows: int, names: tuple[str, ...]) -> dict:
    """Every row's value of these figures, to set one example's beside (cached until the run gains rows)."""
    return runs.run_figures(store, run_id, names)


def open_example(example_id: int, position: int, size: int) -> None:
    """Show this example, on the table page that holds it, with no row picked in the table."""
    state["open_id"], state["opened_on_map"] = example_id, False
    state["page"] = position // size + 1
    state["grid_generation"] = state.get("grid_generation", 0) + 1


def map_selected(space: str, key: str) -> None:
    """A map's box, lasso or click: one point opens that example, more filter the table."""
    picked = sorted({int(p["customdata"]) for p in state[key]["selection"]["points"] if "customdata" in p})
    if len(picked) == 1:
        state["open_id"], state["opened_on_map"] = picked[0], True
    elif picked:
        state["map_pick"] = {"space": space, "ids": picked}
    elif state.get("map_pick", {}).get("space") == space:
        state.pop("map_pick")


def clear_map_selection() -> None:
    state.pop("map_pick", None)
    state["map_generation"] = state.get("map_generation", 0) + 1  # new chart keys drop their selections


def row_picked(key: str) -> None:
    rows, shown = state[key]["selection"]["rows"], state.get("shown_ids", [])
    if rows and rows[0] < len(shown):  # the row index refers to the table the user saw
        state["open_id"], state["opened_on_map"] = shown[rows[0]], False


def say(text: str) -> None:
    """A labelling message, shown on this run's page only."""
    state["label_message"] = {"run": run.id, "text": text}


def save_labels(example_ids: list[int], label: str, note: str | None) -> bool:
    """Label these examples under the annotator's name (one action, which Undo can revert)."""
    try:
        text = labelling.label(store, run.id, example_ids, label, me, note)
    except ScarError as e:
        say(str(e))
        return False
    if len(example_ids) > 1:
        say(text)
    else:
        state.pop("label_message", None)
    return True


def pressed_alone(key: str) -> bool:
    """Whether the key behind this callback is the only example key of this rerun. When several arrived
    together their order is lost, so none of them acts (the first callback says so): a verdict is never
    saved on an example the annotator did not mean."""
    together = [k for k in EXAMPLE_KEYS if state.get(k)]
    if len(together) < 2:
        return True
    if together[0] == key:
        say(f"{' and '.join(EXAMPLE_KEYS[k] for k in together)} arrived together, faster than the page could "
            "show what the first one did, so none of them was applied: press them again, one at a time.")
    return False


def pressed_step(to: str) -> None:
    """The Previous, Next and Next unlabelled keys (their widget keys are `to`): step, unless other keys
    arrived with this one (pressed_alone)."""
    if pressed_alone(to):
        step(to)


def step(to: str) -> None:
    """Open the "previous", "next" or "next_unlabelled" (next not labelled by me) example of the order,
    counted from the one open when the key is handled, not when its button was drawn: keys pressed
    faster than the page redraws each act on the example they follow, never again on an earlier one."""
    nav = state["nav"]
    current = opened(nav)
    position = nav.index(current) if current in nav else -1
    if to == "previous":
        target = position - 1 if position > 0 else None
    elif to == "next":
        target = position + 1 if position + 1 < len(nav) else None
    else:
        target = next_unlabelled(nav, position)
    if target is not None:
        open_example(nav[target], target, state["page_size"])


def next_unlabelled(nav: list[int], position: int) -> int | None:
    """The position of the first example after `position` in the order that I have not labelled."""
    mine = labelling.labelled_by(store, run.id, me) if me else set()
    return next((k for k in range(position + 1, len(nav)) if nav[k] not in mine), None)


def label_and_next(label: str) -> None:
    """Save this verdict on the example open when the key is handled (see step), then open the next."""
    if not pressed_alone(f"label_{label}"):
        return
    example_id = opened(state["nav"])
    if example_id is None:
        return
    note = (state.get(f"note_{example_id}") or "").strip() or None
    if save_labels([example_id], label, note):
        step("next")


def undo() -> None:
    """Revert my own latest labelling action on this run (never another annotator's or another run's)."""
    if pressed_alone("undo"):
        say(labelling.undo(store, run.id, me))


def decide(verdict: str) -> None:
    """A lead's decision on the open example (its annotators disagree), then the next conflict."""
    example_id = opened(state["nav"])
    if example_id is None:
        return
    try:
        say(labelling.adjudicate(store, run.id, [example_id], verdict, me))
    except ScarError as e:
        say(str(e))
        return
    step("next")


def opened(nav: list[int]) -> int | None:
    """The example to show: the one opened last while it is in the order (one clicked on a map stays
    open whatever the filters), else the first of the order."""
    open_id = state.get("open_id")
    if open_id not in nav and not (open_id is not None and state.get("opened_on_map")):
        open_id = nav[0] if nav else None
    return open_id


def exemplars_from_pick(ids: list[int]) -> None:
    """Store a signal of every row's likeness to the rows picked on a map (cosine of v_lf to their mean)."""
    name = f"like-{len(ids)}-picked-{len(signal_names) + 1}"
    try:
        added = signals.add_signal(store, run.id, "exemplar", name=name, made_by=shared.annotator() or "local",
                                   exemplar_ids=ids)
        state["exemplar_message"] = (True, added.message() + " Colour the maps or filter the table by it, or "
                                     "weigh it into a cut on the Select page.")
    except ScarError as e:
        state["exemplar_message"] = (False, str(e))


def confirm_bulk() -> None:
    pending = state.pop("bulk_pending")
    save_labels(pending["ids"], pending["label"], None)


table = shared.run_table(store, run.id)
policy = st.sidebar.selectbox("Label policy", list(POLICIES), format_func=POLICIES.get, key="label_policy",
                              help="How everyone's verdicts become one label per example (also on Select)")
decided = labelling.resolution(store, run.id, policy)
label_of = {k: decided.decided.get(k, "conflict") for k in decided.step}
scores = table["score"].to_numpy()
run_flags = dict(zip(table["example_id"], table["flags"]))
flag_names = selection.flag_names(table)  # once a page, not at every key (0.1 s at 100k rows)
signal_table = signals.with_signals(store, run.id, table[["example_id"]]).set_index("example_id")
signal_names = [c for c in signal_table.columns]  # the run's signals (Select page's Signals section adds them)
map_pick = state.get("map_pick")

# ---- maps -----------------------------------------------------------------------------------------
with st.container():  # one element above the table, however many the maps section draws: see ranked_examples
    st.subheader("Style maps")
    unmappable = map_job.unmappable(store, run)
    map_state = map_job.ensure_map(store, run.id)  # a finished run with no maps gets them now
    selection_names = {s.id: s.name for s in selection.saved(store, run.id)}
    colour = st.radio("Colour by", ["score", "selection", "source", "label", "cluster",
                                   *[f"signal: {n}" for n in signal_names]], horizontal=True,
                      key="map_colour", help="cluster: the k-means clusters of the responses that the coverage-aware "
                      "cut spreads over (Select page); signal: a value stored beside the score (Select, Signals)")
    chosen_selection = None
    if colour == "selection" and selection_names:
        chosen_selection = st.selectbox("Saved selection", list(selection_names), format_func=selection_names.get,
                                        key="map_selection")
    elif colour == "selection":
        st.caption("This run has no saved selection yet: save one on the Select page to see it here.")
    if unmappable:
        st.info(unmappable)
    elif map_state.status in ("failed", "cancelled", "interrupted"):
        shared.error(f"The map job {map_state.status}" + (f": {map_state.error.splitlines()[0]}" if map_state.error else "."))
        if st.button("Compute the maps again (UMAP of v_lf and v_is, stored for later visits)", key="compute_maps"):
            map_job.submit_map(store, run.id)
            st.rerun()
    elif map_state.status in ("queued", "running"):
        @st.fragment(run_every=1.0)
        def map_progress() -> None:
            job = jobs.get_job(store, map_state.id)
            if job.status not in ("queued", "running"):
                st.rerun()
            st.progress(job.done / job.total if job.total else 0.0, text=f"map job {job.id}: {job.message or job.status}")
        st.caption(f"Computing the maps of this run's {done} rows (started automatically when the run finished). "
                   "UMAP on a large run may take minutes (a worker's first UMAP also compiles for about 30 s); "
                   "the table and the example below work meanwhile.")
        map_progress()
    else:
        st.caption(f"Maps stored by job {map_state.id} ({map_state.result.get('method', '?')}, "
                   f"{map_state.result.get('rows', '?')} rows). Draw a box or lasso on a map to filter the table "
                   "and highlight the same rows on the other map; click a point to open it.")
        in_selection = set(selection.saved_one(store, chosen_selection).example_ids) if chosen_selection else set()
        cluster_of = {}
        if colour == "cluster":
            space = shared.run_space(store, run.id)
            cluster_of = dict(zip(table["example_id"].tolist(), space.clusters.tolist()))
            st.caption(f"{space.k} clusters: seeded k-means of the responses' v_lf vectors, the clusters the "
                       "coverage-aware cut spreads over.")
        map_clicks()(key="map_clicks")
        generation = state.get("map_generation", 0)
        for space, column in zip(("lf", "is"), st.columns(2)):
            points = layout(store.url, run.id, space, map_state.id)
            ids = points["example_id"]
            if colour == "score":
                values, continuous = points["score"], True
            elif colour == "source":
                values, continuous = points["source"], False
            elif colour == "label":
                values, continuous = np.array([label_of.get(i) or plots.UNLABELLED for i in ids], dtype=object), False
            elif colour.startswith("signal: "):
                values, continuous = signal_table[colour.removeprefix("signal: ")].reindex(ids).to_numpy(), True
            elif colour == "cluster":
                values, continuous = np.array([f"cluster {cluster_of.get(i, -1) + 1}" if cluster_of.get(i, -1) >= 0
                                               else "(none)" for i in ids], dtype=object), False
            else:
                values, continuous = np.where(np.isin(ids, list(in_selection)), plots.SELECTED, plots.NOT_SELECTED), False
            title = "Linguistic form (v_lf)" if space == "lf" else "Instructional surprisal (v_is)"
            other_pick = map_pick["ids"] if map_pick and map_pick["space"] != space else ()
            figure = plots.style_map(points["x"], points["y"], ids, values, title, continuous,
                                     hover=plots.point_hover(points["instruction"], points["response"], points["score"]),
                                     labelled=label_of if colour != "label" else (), highlighted=other_pick)
            key = f"map_{space}_{generation}"
            with column:
                st.plotly_chart(figure, on_select=partial(map_selected, space, key), key=key,
                                selection_mode=("points", "box", "lasso"), config={"displaylogo": False})
        if map_pick:
            st.button("Clear map selection", key="clear_map", on_click=clear_map_selection)
            if len(map_pick["ids"]) > 1 and access.may(store, "select", run.dataset_id):
                st.button(f"Rank by likeness to these {len(map_pick['ids'])} rows (an exemplar-similarity signal)",
                          key="pick_exemplars", on_click=exemplars_from_pick, args=(map_pick["ids"],))
        if said := state.pop("exemplar_message", None):
            (st.success if said[0] else shared.error)(said[1])


# ---- table ----------------------------------------------------------------------------------------
def signal_filter() -> list[int] | None:
    """A range filter on one of the run's signals: the example ids inside it (None: no filter)."""
    if not signal_names:
        return None
    g1, g2 = st.columns([1, 3])
    name = g1.selectbox("Signal filter", ["(none)", *signal_names], key="signal_filter")
    if name == "(none)":
        return None
    values = signal_table[name].dropna()
    lo, hi = float(values.min()), float(values.max())
    picked = g2.slider(f"{name} range", lo, max(hi, lo + 1e-6), (lo, max(hi, lo + 1e-6)), key=f"signal_range::{name}")
    return values.index[(values >= picked[0]) & (values <= picked[1])].tolist()


@st.fragment
def ranked_examples() -> None:
    """The filters, the ranked table, labelling many at once and the open example as one fragment: a
    labelling key reruns this part alone, so the table's labels and its ▶ marker follow every key while
    the maps above are not redrawn (redrawing them made each key wait seconds at 100k rows,
    bench/label_speed.py). A map selection, a colour choice and an undo redraw the whole page.

    Streamlit names a fragment by its place on the page and drops a key press aimed at a name the last
    run did not draw. So this is called where the same number of elements always stands before it (the
    maps section is one container): when the maps finished and redrew the page, K pressed at that moment
    was lost with nothing said (test_browser_team.py, test_explore.py)."""
    decided = labelling.resolution(store, run.id, policy)  # read again at every key
    st.subheader("Ranked examples")
    dataset_sources = datasets.sources(store, run.dataset_id)
    f1, f2, f3, f4 = st.columns([3, 2, 2, 2])
    search = f1.text_input("Search instruction and response", key="search").strip() or None
    source = f2.selectbox("Source", ["(all)", *dataset_sources], key="source_filter")
    flag = f3.selectbox("Cleaning flag", ["(any)", *flag_names], key="flag_filter")
    label = f4.selectbox("Label", ["(any)", *labelling.LABEL_FILTERS], key="label_filter",
                         help="keep/drop/flag: the label the policy decided; conflict: annotators disagree, unresolved")
    low, high = float(scores.min()), float(scores.max())
    score_range = st.slider("Score range", low, max(high, low + 1e-6), (low, max(high, low + 1e-6)), key="score_range")
    within_signal = signal_filter()
    map_ids = map_pick["ids"] if map_pick else None
    for narrowed in ([selection.flagged_ids(table, flag)] if flag != "(any)" else []) + \
            ([labelling.label_filter(decided, label, table["example_id"].tolist())] if label != "(any)" else []) + \
            ([within_signal] if within_signal is not None else []):
        map_ids = narrowed if map_ids is None else sorted(set(map_ids) & set(narrowed))
    where = runs.ResultFilter(search=search, score_min=score_range[0] if score_range[0] > low else None,
                              score_max=score_range[1] if score_range[1] < high else None,
                              source=None if source == "(all)" else source, ids=map_ids)
    s1, s2, s3 = st.columns([3, 1, 1])
    order = s1.selectbox("Order", list(ORDERS), format_func=ORDERS.get, key="sort")
    if order.startswith("queue") and not me:
        s1.warning("Set your name in the sidebar for a review queue of your own; showing best first.")
        order = "score_desc"
    if order.startswith("queue"):
        nav = review_queue(ordered_ids(store.url, run.id, done, where), labelling.labelled_by(store, run.id, me),
                           order.removeprefix("queue_"), seed=run.id)
    elif order == "conflicts":
        unresolved = set(labelling.label_filter(decided, "conflict", []))
        nav = [i for i in ordered_ids(store.url, run.id, done, where) if i in unresolved]
    else:
        nav = ordered_ids(store.url, run.id, done, where, order)
    size = s2.selectbox("Rows per page", [25, 50, 100, 200], index=1, key="page_size")
    pages = max(1, -(-len(nav) // size))
    shared.set_widget("page", min(max(int(state.get("page", 1)), 1), pages))
    page = s3.number_input(f"Page (of {pages})", 1, pages, key="page")
    st.caption(f"{len(nav)} of {done} scored examples match" + (f" (of {len(map_pick['ids'])} picked on a map)" if map_pick else "")
               + (", not yet labelled by you" if order.startswith("queue") else "")
               + (", annotators disagree" if order == "conflicts" else ""))
    state["nav"] = nav  # the order the example keys move through (step)
    shown_ids = nav[(page - 1) * size: page * size]
    by_id = rows_of(store.url, run.id, done, tuple(shown_ids))
    rows = [by_id[i] for i in shown_ids]
    state["shown_ids"] = shown_ids
    open_id = opened(nav)
    ranked = rank_and_percentile(scores, [r["score"] for r in rows])
    grid = pd.DataFrame([{"open": "▶" if r["example_id"] == open_id else "", "rank": rk, "percentile": round(pct, 1),
                          "score": r["score"], "source": r["source"], "label": decided.summary(r["example_id"]),
                          "flags": run_flags.get(r["example_id"], ""), "instruction": snippet(r["instruction"], 120),
                          "response": snippet(r["response"], 160),
                          **{n: signal_table[n].get(r["example_id"]) for n in signal_names}}
                         for r, (rk, pct) in zip(rows, ranked)])
    grid_key = f"grid_{state.get('grid_generation', 0)}"
    st.dataframe(grid, hide_index=True, on_select=partial(row_picked, grid_key), selection_mode="single-row",
                 key=grid_key)

    # ---- labelling many at once -----------------------------------------------------------------------
    with st.expander("Label many at once, and agreement between annotators"):
        target = nav  # exactly the rows the table lists: its filters and any map selection together
        b1, b2 = st.columns([1, 3])
        bulk_label = b1.selectbox("Label", LABELS, key="bulk_label")
        annotations = labelling.annotations(store, run.id)
        already = labelling.already(annotations, me, target, bulk_label) if me else 0
        change = len(target) - already
        if b2.button(f"Label {change} as {bulk_label}…", key="bulk_start", disabled=not change):
            state["bulk_pending"] = {"ids": list(target), "label": bulk_label, "change": change}
        st.caption(f"The {len(target)} examples the table lists (all pages: its filters"
                   + (" and the map selection" if map_pick else "") + ")"
                   + (f"; {already} of them carry your {bulk_label} already." if already else "."))
        pending = state.get("bulk_pending")
        if pending:
            st.warning(f"Label {pending['change']} examples as {pending['label']} under your name? Your own "
                       "earlier labels on them are replaced (kept in their history); Undo reverts this.")
            c1, c2 = st.columns(2)
            c1.button("Confirm", key="bulk_confirm", type="primary", on_click=confirm_bulk)
            c2.button("Cancel", key="bulk_cancel", on_click=lambda: state.pop("bulk_pending", None))
        st.download_button("Download everyone's labels (for rank --labels)", partial(labelling.labels_file, store, run.id),
                           file_name=f"labels-run-{run.id}.jsonl", mime="application/jsonl", on_click="ignore",
                           key="download_labels")
        pairs = agreement(annotations)
        if pairs:
            st.dataframe(pd.DataFrame([{"annotators": f"{snippet(p.first, 40)} · {snippet(p.second, 40)}",
                                        "both labelled": p.shared, "same label": f"{p.agreement:.0%}",
                                        "Cohen's kappa": "n/a" if p.kappa is None else f"{p.kappa:.2f}"}
                                       for p in pairs]), hide_index=True, key="agreement")
            st.caption("Kappa corrects the raw agreement for the agreement chance alone would give (1: perfect, "
                       "0: chance); n/a where both annotators only ever gave one and the same label.")
        else:
            st.caption("No example has labels from two annotators yet.")
    example_view(nav, by_id, decided)


# ---- one example ----------------------------------------------------------------------------------
def example_view(nav: list[int], by_id: dict[int, dict], decided: Resolution) -> None:
    """The open example, its verdict keys, its labels and how its score was made (in ranked_examples)."""
    message = state.get("label_message")
    if message and message["run"] == run.id:
        st.info(message["text"])
    offer = labelling.undo_offer(store, run.id, me)
    if offer:
        st.button(f"Undo: {offer}", key="undo", shortcut="U", on_click=undo)
    open_id = opened(nav)
    if open_id is None:
        return
    shared.put_in_url("example", open_id)
    position = nav.index(open_id) if open_id in nav else -1  # -1: opened on a map, outside this order
    row = by_id.get(open_id) or runs.results_page(store, run.id, runs.ResultFilter(ids=[open_id]), limit=1)[0]
    rank, percentile = rank_and_percentile(scores, [row["score"]])[0]
    at_end = position + 1 >= len(nav)
    st.subheader(f"Example at rank {rank}")
    st.caption((f"{position + 1} of {len(nav)} in this order." if position >= 0 else
                "Opened on a map; not in the table's order.") +
               (f" Labelling as {markdown_escape(snippet(me, 60))}." if me else " Set your name in the sidebar to label.") +
               " Keys: K keep, D drop, F flag (each saves and moves on), J next, N next you have not labelled, "
               "P previous, U undo.")
    buttons = st.columns(7)
    for column, verdict in zip(buttons, LABELS):
        column.button(verdict.capitalize(), key=f"label_{verdict}", shortcut=SHORTCUTS[verdict],
                      on_click=label_and_next, args=(verdict,), width="stretch")
    buttons[3].button("Previous", key="previous", shortcut="P", disabled=position <= 0, width="stretch",
                      on_click=pressed_step, args=("previous",))
    buttons[4].button("Next", key="next", shortcut="J", disabled=at_end, width="stretch",
                      on_click=pressed_step, args=("next",))
    buttons[5].button("Next unlabelled", key="next_unlabelled", shortcut="N", disabled=next_unlabelled(nav, position) is None,
                      width="stretch", on_click=pressed_step, args=("next_unlabelled",))
    raw = buttons[6].toggle("Raw text", key="raw_text", help="Show the texts exactly as stored, unrendered")
    existing = labelling.verdicts_on(store, open_id)
    my_note = next((x.note for x in existing if x.annotator == me), None)
    st.text_area("Note (saved with your verdict)", value=my_note or "", key=f"note_{open_id}", max_chars=2000,
                 height=68)
    m1, m2, m3 = st.columns(3)
    m1.metric("Score", f"{row['score']:.4f}")
    m2.metric("Rank", f"{rank} / {done}")
    m3.metric("Percentile", f"{percentile:.1f}")

    def show(text: str | None, key: str) -> None:
        if raw:
            st.code(visible(text), language=None, wrap_lines=True)
        else:
            st.html(f'<div class="scar-markdown" data-testid="scar-{key}">{render_markdown(text)}</div>')
    if not raw:
        st.html(f"<style>{code_css()} .scar-markdown pre {{padding: .5em; overflow-x: auto;}}</style>")
    left, right = st.columns(2)
    with left:
        context = row["context"] or []
        if row["system"] or context:
            with st.expander(f"Earlier turns ({len(context)})" + (" and the system prompt" if row["system"] else "")):
                if row["system"]:
                    st.caption("System prompt")
                    show(row["system"], "system")
                for k, turn in enumerate(context):
                    st.caption(f"Earlier turn ({'user' if turn.get('role') == 'user' else 'assistant'})")
                    show(turn.get("content"), f"turn-{k}")
        st.caption("Instruction" + (" (truncated for the ranker)" if row["truncated_instruction"] else ""))
        show(row["instruction"], "instruction")
    with right:
        st.caption("Response" + (" (truncated for the ranker)" if row["truncated_response"] else ""))
        show(row["response"], "response")
    if existing:
        st.dataframe(pd.DataFrame([{"annotator": snippet(x.annotator, 60), "label": x.label,
                                    "note": snippet(x.note, 200), "when": x.created_at} for x in existing]),
                     hide_index=True, key="example_labels")
    if len({x.label for x in existing}) > 1 or decided.step.get(open_id) == "adjudicated":
        st.caption(f"Annotators disagree ({decided.summary(open_id)}). A lead's decision settles it for the label "
                   "policy" + (f", under your name ({markdown_escape(snippet(me, 60))})." if me else
                               "; set your name in the sidebar to decide."))
        for column, verdict in zip(st.columns(3), LABELS):
            column.button(f"Decide: {verdict}", key=f"decide_{verdict}", on_click=decide, args=(verdict,),
                          disabled=not me or not access.may(store, "adjudicate", run.dataset_id), width="stretch")
    past = labelling.history(store, open_id)
    if past:
        with st.expander(f"Label history ({len(past)} changes)"):
            st.dataframe(pd.DataFrame([{**h, "who": snippet(h["who"], 60), "note": snippet(h["note"], 200)}
                                       for h in past]), hide_index=True, key="label_history")

    figures = {"score": row["score"], **runs.result_diagnostics(row)}
    parts = score_parts(figures)
    if parts:
        st.caption(f"The score is the sum of these parts: {parts_equation(parts, row['score'])}")
        for column, (name, value) in zip(st.columns(len(parts)), parts.items()):
            column.markdown(f"**{PART_LABELS[name]}**")  # a metric's own label is cut off at the column's width
            column.metric(PART_LABELS[name], f"{value:.4f}", help=f"`{name}` in the score command's JSON lines",
                          label_visibility="collapsed")
        dominance = dominance_note(run_parts(store.url, run.id, done))
        if dominance:
            st.info(dominance)
    if "lm_nll" in figures:
        nll = figures["lm_nll"]
        if lm_term_predicted(run.params["model"]):
            measured = (f"its own encoder estimates this response's NLL at {nll:.3f} nats per token (trained "
                        "to match a small language model's measurements, so no language model runs when "
                        "scoring; lower scores higher)")
        else:
            measured = ("too little of it is its own text, not copied from the prompt, to measure, so that part "
                        "counts it as average" if nll is None else
                        f"this response's NLL is {nll:.3f} nats per token, text copied from the prompt left out "
                        "(lower scores higher)")
        st.caption(f"This ranker also scores by its LM's surprisal: {measured}. The form and surprisal "
                   "parts split the rest of the score around the starting point; the LM term's part is 0 "
                   "for a response of average NLL.")
    names = tuple(name for name, value in figures.items() if isinstance(value, (int, float)) and name != "score")
    data_set = {**data_set_figures(store.url, run.id, done, names), "score": scores}
    st.caption("Diagnostics: this example beside the data set (percentile: share of its rows at or below)")
    st.dataframe(against_data_set(figures, data_set), hide_index=True, key="diagnostics")
    for kind, detail in (row["flags"] or {}).items():
        facts = ", ".join(f"{k} {v}" for k, v in detail.items()) if isinstance(detail, dict) else str(detail)
        st.caption(snippet(f"Cleaning flag {kind}: {facts}", 300))


ranked_examples()

# ---- distributions --------------------------------------------------------------------------------
st.subheader("Distributions")
varying = {name: values[np.isfinite(values)] for name, values in run_parts(store.url, run.id, done).items()
           if name != "lm_contribution" or np.isfinite(values).any()}  # the LM term: only rankers with one
histograms = st.columns(2)
histograms[0].plotly_chart(plots.histogram(scores, "Score", "score"), key="hist_score")
for k, (name, values) in enumerate(varying.items(), start=1):
    column, title = histograms[k % 2], PART_LABELS[name]
    if len(values):
        column.plotly_chart(plots.histogram(values, title, title), key=f"hist_{name}")
    else:
        column.info(f"{title}: not computed for this run.")
st.plotly_chart(plots.score_vs_length(scores, table["words"].to_numpy()), key="score_length")
