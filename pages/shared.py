"""Streamlit glue shared by the pages: the store, cached rankers, the annotator name, run pickers
and error display. Logic lives in scar_core and db; this only connects it to widgets."""
from __future__ import annotations

import logging
import runpy
import traceback
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from db import datasets, rankers, runs
from db.store import Store, open_store, resolve_url
from scar_core import display
from scar_core.display import markdown_escape
from scar_core.errors import ScarError
from scar_core.jobs import access, overview, score as scoring, selection
from pages import team_mode

log = logging.getLogger("scar_studio")
APP = Path(__file__).resolve().parents[1] / "app.py"


@st.cache_resource(show_spinner=False)
def _store(url: str) -> Store:
    return open_store(url)


def store() -> Store:
    """The store named by $SCAR_DB_URL (default ./scar_studio.db), opened once per server. Every page
    asks for it first, so this is also where a page run outside the app is sent back into it."""
    within_app()
    try:
        return _store(resolve_url())
    except ScarError as e:
        error(str(e))
        st.stop()


def within_app() -> None:
    """Run the page inside app.py. While no session has run app.py yet (a freshly started server whose
    first visitor opens a bookmarked /explore), Streamlit treats `pages/` as its old automatic page
    folder and runs the page file alone: its own page list (with `shared`), no name box, no error guard.
    Then app.py runs here, in this same run (a click that started it is kept), shows its navigation and
    this page, and the lone page stops."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        runpy.run_path(str(APP))  # its st.navigation ends the automatic mode for the whole server
        st.stop()


@st.cache_resource(show_spinner="Loading the ranker…", max_entries=2)
def ranker(location: str):
    """A loaded ranker (kept in memory across reruns; at most two at a time)."""
    from scar_core.ranker import load_ranker

    return load_ranker(location)


def error(message: str) -> None:
    """Show a message that may quote data (file names, field values) as literal text; in team mode with
    every server path cut to its last part (a user never learns where the server keeps files)."""
    st.error(markdown_escape(access.without_paths(message) if access.team() else message))


@st.cache_data(max_entries=4, show_spinner="Reading the run…")
def _run_table(url: str, run_id: int, rows: int):
    return selection.run_table(open_store(url), run_id)


def run_table(store: Store, run_id: int):
    """The per-example columns of a run (scar_core.jobs.selection.run_table), cached until the run
    gains rows. Labels change often, so callers read them fresh (browse.run_labels)."""
    return _run_table(store.url, run_id, runs.count_done(store, run_id))


@st.cache_data(max_entries=4, show_spinner="Clustering the responses (k-means of v_lf)…")
def _run_space(url: str, run_id: int, rows: int):
    return selection.run_space(open_store(url), run_id, _run_table(url, run_id, rows))


def run_space(store: Store, run_id: int):
    """The run's embeddings and clusters (scar_core.jobs.selection.run_space), cached until the run gains rows."""
    return _run_space(store.url, run_id, runs.count_done(store, run_id))


def guarded(work: Callable[[], None]) -> None:
    """Run a page; user errors appear as a message, unexpected ones as a short message (traceback to the log)."""
    try:
        work()
    except ScarError as e:
        error(str(e))
    except Exception as e:  # never show a traceback in the page
        log.error("unexpected error\n%s", traceback.format_exc())
        error("Unexpected error. Details are in the server log." if access.team() else
              f"Unexpected error ({type(e).__name__}): {e}. Details are in the server log.")


def sidebar() -> None:
    """The annotator name, set once and kept for the session, and the scoring under way (on every page)."""
    with st.sidebar:
        if access.team() is not None:
            team_mode.signed_in_box(_store(resolve_url()))  # team mode: the signed-in identity labels, no name box
        else:
            st.text_input("Your name (for labels)", key="_annotator", value=st.session_state.get("annotator", ""),
                          on_change=lambda: st.session_state.update(annotator=st.session_state["_annotator"].strip()),
                          max_chars=128, placeholder="annotator name")
        try:
            opened = _store(resolve_url())  # not store(): app.py calls this before its navigation exists
        except ScarError:
            return  # the page itself says why the store does not open
        scoring_status(opened)


def scoring_status(store_: Store) -> None:
    """A live line per scoring job under way (polled every two seconds only while one is)."""
    @st.fragment(run_every=2.0 if overview.active_scoring(store_) else None)
    def status() -> None:
        for run, job in overview.active_scoring(store_):
            fraction = min(job.done / job.total, 1.0) if job.total else 0.0
            left = f" · about {display.duration(job.eta_s)} left" if job.eta_s else ""
            st.progress(fraction, text=f"Scoring run {run.id}: {job.done:,}/{job.total:,}{left}")
    status()


def annotator() -> str:
    """The name labels are given under: the signed-in identity in team mode, else the sidebar's name box."""
    if access.team() is not None:
        return team_mode.identity() or ""
    return st.session_state.get("annotator", "")


def pick_dataset(store: Store, key: str = "dataset") -> int | None:
    """A dataset chooser remembered across pages; None when the store has none."""
    allowed = access.visible_datasets(store)  # team mode: an annotator's assigned data sets
    items = [d for d in datasets.list_datasets(store) if allowed is None or d.id in allowed]
    if not items:
        st.info("No datasets yet: add one on the Datasets page.")
        return None
    names = {d.id: f"#{d.id} {d.name} ({d.example_count} pairs)" for d in items}
    return _remembered(key, "Dataset", list(names), names.get)


def page_run(title: str, finished_only: bool = False) -> tuple[Store, runs.Run]:
    """A page about one scoring run: the store and the run picked (the page stops when there is none)."""
    store_ = store()
    st.header(title)
    run = pick_run(store_, finished_only)
    if run is None:
        st.stop()
    return store_, run


def pick_run(store: Store, finished_only: bool = False) -> runs.Run | None:
    """A scoring-run chooser remembered across pages and kept in the URL (`?run=N`), so a link or a
    bookmark opens the same run; with no run named, the newest finished run (not one still scoring).
    None when no run exists."""
    allowed = access.visible_datasets(store)  # team mode: runs of an annotator's assigned data sets
    items = [r for r in runs.list_runs(store) if (not finished_only or r.status == "done")
             and (allowed is None or r.dataset_id in allowed)]
    if not items:
        st.info("No scored runs yet: score a dataset on the Rank page.")
        return None
    named = url_choice("run", [r.id for r in items])
    if named is not None:
        st.session_state["run"] = named
    labels = run_names(store, items)
    newest_done = next((r.id for r in items if r.status == "done"), items[0].id)
    chosen = _remembered("run", "Scoring run", list(labels), labels.get, default=newest_done)
    put_in_url("run", chosen)
    return next(r for r in items if r.id == chosen)


def page_link(where, page: str, label: str, **options) -> None:
    """`where.page_link`, or the label as plain text when this person's navigation lacks the page (team
    mode shows each role only its own pages, and a link to a missing page is an error)."""
    try:
        where.page_link(page, label=label, **options)
    except StreamlitPageNotFoundError:
        where.write(label)


def url_choice(name: str, options: list[int] | None = None) -> int | None:
    """The id the URL names under `name` (one of `options` when given) unless it is the one this session
    last wrote there: a choice made since on the page is not undone by the URL it has not updated yet."""
    value = st.query_params.get(name)
    if value is None or value == st.session_state.get(f"_url_{name}"):
        return None
    st.session_state[f"_url_{name}"] = value
    return int(value) if value.isdigit() and (options is None or int(value) in options) else None


def put_in_url(name: str, value: int) -> None:
    """Keep `?name=value` in the address bar, so the page can be shared or bookmarked as it is."""
    if st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)
    st.session_state[f"_url_{name}"] = str(value)


def run_names(store: Store, items: list[runs.Run]) -> dict[int, str]:
    """{run id: "run 3: dataset · ranker · precision · status[ · sample of 20 of 450 rows]"} for run choosers."""
    names = {d.id: d.name for d in datasets.list_datasets(store)}
    ranker_names = {r.id: r.name for r in rankers.list_rankers(store)}
    scope = {r.id: scoring.scope_note(store, r) for r in items}
    return {r.id: f"run {r.id}: {names.get(r.dataset_id, '?')} · ranker {ranker_names.get(r.ranker_id, '?')} · "
                  f"{r.precision} · {r.status}" + (f" · {scope[r.id]}" if scope[r.id] else "") for r in items}


def set_widget(key: str, value) -> None:
    """Give the widget under `key` this value before it is drawn, writing its state only when it
    differs: a write on every rerun would reset a widget the user is still moving (a slider's arrow
    presses lost while the page reruns)."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value


def _remembered(key: str, label: str, options: list[int], describe: Callable[[int], str],
                default: int | None = None) -> int:
    """A selectbox whose choice survives page switches (widget state alone is dropped on switch) and
    follows a choice made elsewhere (a dataset just imported, a run just started): the remembered
    value, not the widget's own earlier state, decides what it shows; with none, `default` (else the first).

    A choice made elsewhere draws a new widget (a new key) rather than writing into the old one, and no
    callback copies the widget back: a browser sends every widget's value with each change, so until it
    has the new choice it sends the old box's value. That value belongs to a widget no longer drawn and
    is dropped, where a callback would have moved the choice back to it."""
    current = st.session_state.get(key)
    if current not in options:
        current = default if default in options else options[0]
    version = st.session_state.get(f"_{key}_version", 0)
    if st.session_state.get(f"_{key}_shown") != current:  # chosen elsewhere, not in this box
        version += 1
        st.session_state[f"_{key}_version"] = version
    choice = st.selectbox(label, options, index=options.index(current), format_func=describe,
                          key=f"_{key}-{version}")
    st.session_state[key] = st.session_state[f"_{key}_shown"] = choice
    return choice
