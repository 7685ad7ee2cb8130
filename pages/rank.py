"""Rank: choose a dataset, a ranker, device and precision; clean and score in a background job."""
from pathlib import Path

import pandas as pd
import streamlit as st

from db import jobs, rankers, runs
from pages import shared
from scar_core import display, hub
from scar_core.clean import DEDUP_MODES, DEFAULT_ECHOES, DEFAULT_EMPTY, DEFAULT_REFUSALS, DEGENERATE_MODES
from scar_core.device import PRECISION_CHOICES, gpu_name
from scar_core.errors import ScarError
from scar_core.jobs import estimate as estimates, ray as ray_engine, runner as background, score as scoring
from scar_core.ranker import DEFAULT_DIR

store = shared.store()
st.header("Rank")
jobs.mark_stale(store)
dataset_id = shared.pick_dataset(store)
if dataset_id is None:
    st.stop()
top = st.container()  # progress goes here, above the fold
started = top.empty()  # one element, said or not: the progress under it keeps its name (see progress)
said = st.session_state.get("rank_said")  # (run id, what starting it did): shown while that run is going
if said and getattr(runs.get_run(store, said[0]), "status", None) in ("queued", "running"):
    started.success(said[1])
else:
    st.session_state.pop("rank_said", None)

with st.container():  # one element above the history, however many the settings draw: see progress
    choice = st.radio("Ranker", ["default", "trained", "checkpoint folder", "hub id"], horizontal=True,
                      key="ranker_kind")
    model = None
    if choice == "default":
        if (DEFAULT_DIR / "config.json").is_file():
            model = "default"
        else:
            st.warning(f"The default ranker is not installed ({DEFAULT_DIR} holds no checkpoint). "
                       "Train one on the command line, or choose a checkpoint folder.")
    elif choice == "trained":
        trained = [r for r in rankers.list_rankers(store) if r.name != "default" and Path(r.location).is_dir()]
        if trained:
            names = {r.location: f"{r.name} ({r.encoder}, {r.identity[:10]})" for r in trained}
            model = st.selectbox("Trained ranker", list(names), format_func=names.get, key="trained_ranker")
        else:
            st.info("No trained rankers in the store yet.")
    elif choice == "checkpoint folder":
        model = st.text_input("Checkpoint folder on the server", key="checkpoint_dir").strip() or None
    else:
        repo = st.text_input("Hub id (owner/name)", key="hub_id", disabled=hub.offline()).strip()
        if hub.offline():
            st.info("The Hub is switched off on this machine (HF_HUB_OFFLINE); use a local checkpoint.")
        model = repo or None

    gpu = gpu_name()
    device_col, precision_col, batch_col = st.columns(3)
    device = device_col.selectbox("Device", ["auto", "cpu", "cuda"], key="device",
                                  help="auto: the GPU when one is found, else the CPU")
    device_col.caption(f"GPU found: {gpu}" if gpu else "No GPU found: scoring runs on the CPU")
    precision = precision_col.selectbox("Precision", PRECISION_CHOICES, key="precision",
                                        help="auto: bf16 where the hardware computes it natively, else fp32")
    batch_size = batch_col.number_input("Batch size", 1, 4096, None, key="batch_size", placeholder="device default",
                                        help="most texts per encoder batch; empty: 128 on CPU, 512 on GPU")

    engine_col, address_col, workers_col = st.columns(3)
    engine = engine_col.radio("Engine", ["this machine", "Ray cluster"], key="engine", horizontal=True,
                              help="Ray cluster: Ray Data actors, one ranker each, on the cluster at the address")
    on_ray = engine == "Ray cluster"
    if not on_ray and scoring.engine_here(model, device) == "int8":
        engine_col.caption("This CPU has int8 instructions (VNNI) but no native bf16: the language-model term runs "
                           "in int8 through CTranslate2, about 2x faster than fp32 with the same ranking to 0.998 "
                           "(models/default/README.md). SCAR_ENGINE=torch turns it off.")
    address = address_col.text_input("Ray cluster address", ray_engine.default_address() or "", key="ray_address",
                                     disabled=not on_ray, placeholder="empty: a local Ray instance",
                                     help="auto, HOST:PORT or ray://HOST:10001 (default $SCAR_RAY_ADDRESS)")
    workers = workers_col.number_input("Ray workers", 1, 4096, None, key="ray_workers", disabled=not on_ray,
                                       placeholder="one per GPU, else per CPU", help="actors, each holding one ranker")

    # folded: Start and the progress above it fit one screen
    with st.expander("Cleaning (flags rows; nothing is deleted)"):
        do_clean = st.checkbox("Clean before scoring", value=True, key="do_clean")
        dedup = st.selectbox("Duplicates", DEDUP_MODES, key="dedup", disabled=not do_clean,
                             help="near: MinHash near duplicates and exact copies; exact: exact copies only")
        lang = st.text_input("Expected languages (e.g. en or en,de; 'any' for no check)", "en", key="lang",
                             disabled=not do_clean)
        modes = {"drop": "flag and leave out of cuts", "keep": "flag, keep in cuts", "none": "don't check"}
        e1, e2, e3 = st.columns(3)
        echoes = e1.selectbox("Echoes of the prompt", DEGENERATE_MODES, DEGENERATE_MODES.index(DEFAULT_ECHOES),
                              format_func=modes.get, key="echoes", disabled=not do_clean,
                              help="responses that only repeat the instruction, with almost no words of their own")
        empty = e2.selectbox("Empty responses", DEGENERATE_MODES, DEGENERATE_MODES.index(DEFAULT_EMPTY),
                             format_func=modes.get, key="empty", disabled=not do_clean,
                             help="no letters, digits or symbols: whitespace, punctuation or invisible characters")
        refusals = e3.selectbox("Refusals", DEGENERATE_MODES, DEGENERATE_MODES.index(DEFAULT_REFUSALS),
                                format_func=modes.get, key="refusals", disabled=not do_clean,
                                help="short responses that decline the task (\"I'm sorry, but I can't ...\")")

    if model is not None and not on_ray:
        try:
            with st.spinner("Counting the data set's tokens for the estimate…"):  # once per data set
                guess = estimates.estimate(store, dataset_id, model, device, precision, clean=do_clean)
        except ScarError:
            guess = None  # the device is not here; starting says why
        if guess is None:
            st.info("No rate measured for this ranker on this device yet: score a random sample first, and the "
                    "time for the whole dataset shows here.")
        else:
            faster = " A GPU or the Ray engine would be faster." if guess.device == "cpu" else ""
            where = "CPU" if guess.device == "cpu" else "GPU"
            st.info(f"Scoring all {guess.rows:,} pairs: about {display.duration(guess.seconds)} on this {where} "
                    f"(between {display.duration(guess.low)} and {display.duration(guess.high)}).{faster}  \n"
                    f"How: {guess.how()}.")

    start_col, sample_col, size_col = st.columns([1, 1, 1], vertical_alignment="bottom")
    start_all = start_col.button("Start scoring", type="primary", disabled=model is None, key="start")
    start_sample = sample_col.button("Score a random sample first", disabled=model is None, key="start_sample",
                                     help="a seeded random sample of the rows, to measure the rate on this machine")
    sample_rows = size_col.number_input("Sample rows", 10, 100_000, 200, step=50, key="sample_rows")
    if start_all or start_sample:
        try:
            location = scoring.checkpoint_here(store, model, hub_id=choice == "hub id")
            shared.ranker(location)  # refuse a checkpoint that does not load before starting a worker
            with st.spinner("Starting…"):
                run, joined = scoring.start_score(store, dataset_id, model=location, device=device, precision=precision,
                                           batch_size=int(batch_size) if batch_size else None,
                                           sample=int(sample_rows) if start_sample else None,
                                           clean={"dedup": dedup, "lang": lang, "echoes": echoes, "empty": empty,
                                                  "refusals": refusals} if do_clean else None,
                                           engine=ray_engine.RayCluster(address.strip() or None,
                                                                        int(workers) if workers else None).params()
                                           if on_ray else None)
            st.session_state["run"] = run.id
            st.session_state["rank_said"] = (run.id, f"Run {run.id} is already scoring this data set with this ranker "
                                             "and precision; following it." if joined else f"Started run {run.id}.")
            st.rerun()  # from the top: the sidebar's status, drawn before this button, follows the run too
        except ScarError as e:
            shared.error(str(e))


def active_jobs() -> list:
    """(run, job) of this dataset's queued or running scoring jobs."""
    pairs = [(r, jobs.get_job(store, r.job_id)) for r in runs.list_runs(store, dataset_id) if r.job_id]
    return [(r, j) for r, j in pairs if j and j.status in ("queued", "running")]


@st.fragment(run_every=1.0 if active_jobs() else None)
def progress() -> None:
    """Live progress of this dataset's running jobs, with a cancel button each (polls only while one runs);
    once none runs, how the latest run ended and, when it finished, the way on to Explore.

    Streamlit names a fragment by its place on the page and drops a click aimed at a name the last run
    did not draw. So the line saying a run started has its slot whether it shows or not, and the settings
    above the history are one container: Cancel and Resume keep their names as a run ends or a setting
    changes (test_workbench.py)."""
    active = active_jobs()
    watching = st.session_state.setdefault("watching", set())
    if watching - {j.id for _, j in active}:
        watching.clear()
        st.rerun()  # a job ended: refresh the history below
    if not active:
        ended()
    for run, job in active:
        watching.add(job.id)
        fraction = min(job.done / job.total, 1.0) if job.total else 0.0
        known = [f"{job.rate:.1f} pairs/s" if job.rate else "",
                 f"about {display.duration(job.eta_s)} left" if job.eta_s else ""]
        st.progress(fraction, text=" · ".join([f"run {run.id}: {job.message or job.status}",
                                               f"{job.done:,}/{job.total:,}", *filter(None, known)]))
        if st.button("Cancel", key=f"cancel_{job.id}"):
            background.cancel(store, job.id)


def ended() -> None:
    """How this dataset's latest run ended, with a link into Explore when it finished."""
    latest = runs.list_runs(store, dataset_id)
    if not latest:
        st.text("No scoring job running.")
        return
    run = latest[0]
    if run.status == "done":
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.success(f"Run {run.id} finished: {runs.count_done(store, run.id):,} pairs scored. No scoring job running.")
        shared.page_link(c2, "pages/explore.py", f"Open run {run.id} in Explore", icon=":material/arrow_forward:",
                         query_params={"run": str(run.id)})
    else:
        st.text(f"No scoring job running. Latest run {run.id}: {run.status}.")


@st.fragment(run_every=1.0 if active_jobs() else None)
def run_history() -> None:
    """This dataset's runs, redrawn every second while one runs, as the progress at the top is."""
    history = runs.list_runs(store, dataset_id)
    if not history:
        st.info("This dataset has not been scored yet.")
        return
    names = {r.id: r.name for r in rankers.list_rankers(store)}
    table = []
    for run in history:
        job = jobs.get_job(store, run.job_id) if run.job_id else None
        table.append({"run": run.id, "scope": scoring.scope_note(store, run) or "whole data set",
                      "ranker": names.get(run.ranker_id), "device": run.device,
                      "precision": run.precision, "engine": run.engine, "status": run.status,
                      "scored": f"{job.done}/{job.total}" if job else "", "started": run.started_at,
                      "finished": run.finished_at,
                      "error": (job.error or "").split("\n")[0][:200] if job else ""})
    st.dataframe(pd.DataFrame(table), hide_index=True)
    resumable = [r for r in history if r.status in ("interrupted", "failed", "cancelled") and r.job_id]
    if resumable:
        pick = st.selectbox("Resume a run", [r.id for r in resumable], format_func=lambda i: f"run {i}",
                            key="resume_pick")
        if st.button("Resume", key="resume"):
            try:
                background.resume(store, next(r.job_id for r in resumable if r.id == pick))
                st.rerun()
            except ScarError as e:
                shared.error(str(e))


with top:
    progress()
st.subheader("History")
run_history()
