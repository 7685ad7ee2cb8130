"""Select: cut by ratio, top-k or threshold (a slider and a number kept in step, or a click on the
threshold curve), see what the cut keeps and the rows either side of the cut line, apply overrides and
quotas, save."""
import os
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from db import jobs, runs
from pages import shared
from scar_core import display, plots
from scar_core.display import snippet
from scar_core.errors import ScarError
from scar_core.jobs import labelling, runner as background, score as scoring, selection, signals, validation
from scar_core.labels import POLICIES, steps_in_words
from scar_core.select import around_cut, rank_and_percentile, rule_value_at, split_stats
from scar_core.signals import parse_weights
from scar_core.validate import Settings as TuneSettings

store, run = shared.page_run("Select", finished_only=True)
sample = scoring.scope_note(store, run)
if sample:
    st.warning(f"This run scored a random {sample} of its data set, not all of it: a cut "
               "here is a cut of the sample. Score the whole data set on the Rank page before exporting a "
               "training set.")


def copy_value(source: str, target: str, kept: str) -> None:
    """Keep the slider and the number box of one rule in step, and remember the value across pages."""
    st.session_state[target] = st.session_state[kept] = st.session_state[source]


def cut_value(rule: str, label: str, low: float, high: float, default: float, step: float,
              number_format: str | None = None) -> float:
    """The rule's value from a slider with a number box beside it; either one moves the other.

    The box sits in a form: its value reaches the server only when set (Enter or Set). A browser sends
    every widget's value with each change, so a box outside a form sent its older value with every
    slider key press, and a rerun where only that older value differed from the server's moved the
    cut back to it."""
    number, kept = f"{rule}_number", f"{rule}_kept"
    value = min(max(st.session_state.get(kept, default), low), high)  # another run may have another range
    st.session_state[kept] = value
    shared.set_widget(rule, value)
    shared.set_widget(number, value)
    left, right = st.columns([5, 1])
    left.slider(label, low, high, step=step, key=rule, on_change=copy_value, args=(rule, number, kept))
    with right.form(f"{rule}_typed", border=False):
        st.number_input(f"{label} (type it)", low, high, step=step, key=number, format=number_format)
        st.form_submit_button("Set", on_click=copy_value, args=(number, rule, kept))
    return st.session_state[rule]


def move_cut(rule: str, pool_scores: np.ndarray, chart: str) -> None:
    """A click on the threshold curve moves the cut to that point (rounded to the widgets' steps).

    A click is used once: the next run draws the curve under a new key, with no point selected, so
    a later rerun cannot apply the old click again over a value typed or slid since."""
    points = st.session_state[chart]["selection"]["points"]
    if not points:
        return
    st.session_state["cut_curve_clicks"] = st.session_state.get("cut_curve_clicks", 0) + 1
    value = rule_value_at(rule, float(points[0]["x"]), pool_scores)
    value = {"ratio": max(0.01, round(value, 2)), "topk": int(value)}.get(rule, value)
    st.session_state[rule] = st.session_state[f"{rule}_number"] = st.session_state[f"{rule}_kept"] = value


table = shared.run_table(store, run.id)
n = len(table)
scores = table["score"].to_numpy()

rule = st.radio("Cut by", ["ratio", "topk", "threshold"], horizontal=True, key="rule",
                format_func={"ratio": "ratio of the pool", "topk": "top-k rows", "threshold": "score threshold"}.get)
if rule == "ratio":
    value = cut_value("ratio", "Keep this ratio", 0.01, 1.0, 0.3, 0.01)
elif rule == "topk":
    value = cut_value("topk", "Keep this many rows", 1, max(n, 2), max(1, n // 3), 1)
else:
    low, high = float(scores.min()), float(scores.max())
    high = max(high, low + 1e-6)
    value = cut_value("threshold", "Keep rows scoring at least", low, high, (low + high) / 2, (high - low) / 1000,
                      "%.4f")

o1, o2 = st.columns(2)
use_labels = o1.checkbox("Apply annotator labels (keep forces in, drop forces out)", value=True, key="use_labels")
policy = o1.selectbox("Label policy (when annotators disagree)", list(POLICIES), format_func=POLICIES.get,
                      key="label_policy", disabled=not use_labels)
skip_flagged = o2.checkbox("Leave out rows flagged by cleaning (language, echoes, empty responses, refusals cleaned "
                           "with 'leave out'; duplicates keep their best-scored copy)", value=True,
                           key="skip_flagged")
with st.container():  # one element above the signals, whatever quotas and clusters draw: see validation_progress
    quotas = None
    if st.checkbox("Per-source quotas", key="use_quotas"):
        counts = table["source"].fillna("(none)").value_counts()
        edited = st.data_editor(pd.DataFrame({"source": counts.index, "rows": counts.values,
                                              "max kept": counts.values}),
                                disabled=["source", "rows"], hide_index=True, key="quota_editor")
        quotas = dict(zip(edited["source"], edited["max kept"]))

    coverage = st.slider("Coverage: 0 cuts by score alone; towards 1 the cut spreads over clusters of similar "
                         "responses", 0.0, 1.0, 0.0, 0.05, key="coverage")
    space = shared.run_space(store, run.id) if coverage > 0 or st.session_state.get("show_evidence", True) else None
    if coverage > 0:
        st.caption(f"{space.k} clusters (k-means of the responses' v_lf embeddings, seed 0; the cut takes from each "
                   "in proportion to its size as coverage rises).")


def add_signal(kind: str) -> None:
    """Compute or import the signal the Signals section asks for; say what happened."""
    name = st.session_state["signal_name"].strip() or kind
    try:
        if kind == "imported":
            upload = st.session_state["signal_file"]
            if upload is None:
                raise ScarError("choose a file of id, score rows first")
            added = signals.import_upload(store, run.id, upload.getvalue(), upload.name, name, shared.annotator() or "local")
        elif kind == "ifd":  # two LM passes over every row: a background job
            job = signals.submit_signal(store, run.id, kind, name=name, made_by=shared.annotator() or "local")
            st.session_state["signal_message"] = (True, f"Started job {job.id} computing '{name}'.")
            return
        else:
            pasted = [t for t in st.session_state.get("signal_exemplars", "").split("\n---\n") if t.strip()]
            added = signals.add_signal(store, run.id, kind, name=name, made_by=shared.annotator() or "local",
                                       exemplar_texts=pasted)
        st.session_state["signal_message"] = (True, added.message())
    except ScarError as e:
        st.session_state["signal_message"] = (False, str(e))


weights = None
with st.expander("Signals beside the score: length, novelty, exemplar similarity, IFD, imported scores"):
    with st.container():  # one element above the signal job's progress, whatever it draws: see validation_progress
        summary = signals.signal_summary(store, run.id)
        if len(summary):
            st.dataframe(summary, hide_index=True, key="signal_table")
        s1, s2 = st.columns(2)
        kind = s1.selectbox("Add a signal", ["length", "novelty", "exemplar", "ifd", "imported"], key="signal_kind",
                            format_func={"length": "length: response tokens",
                                         "novelty": "novelty: distance to the 10 nearest responses",
                                         "exemplar": "exemplar similarity: cosine to pasted examples",
                                         "ifd": "IFD: the LM's perplexity with / without the instruction",
                                         "imported": "imported: id, score rows from another tool"}.get)
        s2.text_input("Its name", key="signal_name", placeholder=kind, max_chars=64)
        if kind == "exemplar":
            st.text_area("Exemplar responses (separate several with a line holding ---)", key="signal_exemplars")
        elif kind == "imported":
            st.file_uploader("Scores file (.jsonl, .json or .csv with id and score; ids as `score` writes them)",
                             type=["jsonl", "json", "csv"], key="signal_file")
        elif kind == "ifd":
            st.caption(f"IFD runs the language model twice over every row, as a background job: about "
                       f"{signals.ifd_estimate_seconds(store, run.id) / 60:.0f} minutes on a 2-core CPU.")
    signal_job = signals.latest_signal_job(store, run.id)
    busy = signal_job is not None and signal_job.status in ("queued", "running")
    st.button("Add signal", key="signal_add", on_click=add_signal, args=(kind,), disabled=busy and kind == "ifd")
    if busy:
        @st.fragment(run_every=2.0)
        def signal_progress() -> None:
            job = jobs.get_job(store, signal_job.id)
            if job.status not in ("queued", "running"):
                st.rerun()
            st.progress(job.done / job.total if job.total else 0.0,
                        text=f"signal job {job.id}: {job.message or job.status}")
            st.button("Cancel", key="signal_cancel", on_click=background.cancel, args=(store, job.id))
        signal_progress()
    elif signal_job is not None and signal_job.status != "done" and signal_job.error:
        shared.error(f"Signal job {signal_job.id} {signal_job.status}: {signal_job.error.splitlines()[0]}")
    ok, said = st.session_state.pop("signal_message", (True, None))
    if said:
        (st.success if ok else shared.error)(said)
    blend = st.text_input("Cut on a blend of the score and signals (weights of z-scores, e.g. scar=1, novelty=0.5; "
                          "empty: the score alone)", key="signal_weights")
    if blend.strip():
        try:
            weights = parse_weights(blend)
        except ScarError as e:
            shared.error(str(e))
with st.container():  # one element above the validations, however many the cut draws: see validation_progress
    try:
        cut, _ = selection.select_run(store, run.id, rule, value, use_labels=use_labels, policy=policy,
                                      keep_flagged=not skip_flagged, quotas=quotas, table=table, coverage=coverage,
                                      space=space, weights=weights)
    except ScarError as e:  # a weight naming no signal
        shared.error(str(e))
        st.stop()
    if cut.blend:
        st.caption(f"Cut on the blend {cut.blend['weights']} ({cut.blend['scale']}): the kept rows are the best by "
                   "the blend (a threshold compares blended values), and the manifest records the weights and each "
                   "signal's settings.")
    left_out = n - cut.eligible

    m = st.columns(5)
    m[0].metric("Kept", f"{len(cut.kept)} of {n}")
    m[1].metric("Lowest kept score", "n/a" if cut.threshold is None else f"{cut.threshold:.4f}")
    m[2].metric("Left out by cleaning", left_out)
    m[3].metric("Overrides", f"+{cut.forced_in} / -{cut.forced_out}")
    m[4].metric("Skipped by quotas", cut.quota_skipped)
    if cut.label_policy:
        st.caption(f"Labels under this policy: {steps_in_words(cut.label_policy['rows'])}"
                   + (". A lead can decide the unresolved ones in Explore's conflict queue."
                      if cut.label_policy["rows"]["unresolved"] else "."))
    st.table(split_stats(cut.mask, table["words"].to_numpy()))

    decided = labelling.resolution(store, run.id, policy)  # the label column near the cut and the evidence
    if st.toggle("Evidence: the cut beside random, longest-k and length-matched subsets of the same size",
                 value=True, key="show_evidence") and len(cut.kept):
        st.dataframe(selection.run_evidence(cut, table, space, decided), key="evidence")
        st.caption("Each baseline keeps as many rows as the cut under the same cleaning, quotas and labels (random: "
                   "seeded; longest: the longest responses; length-matched: random within the cut's length bins). "
                   "Mean score favours the cut by construction; clusters touched, diversity (mean pairwise cosine "
                   "distance of v_lf), length and overlap with longest-k say more.")

    st.subheader("At the cut line")
    above, below = around_cut(cut, scores)
    texts = {r["example_id"]: r for r in runs.results_page(store, run.id, runs.ResultFilter(
        ids=table["example_id"].to_numpy()[np.concatenate([above, below])].tolist()), limit=len(above) + len(below))}

    def near_cut(positions: np.ndarray) -> pd.DataFrame:
        """The rows at these table positions with their rank (1: best score of the run) and a preview."""
        ranked = rank_and_percentile(scores, scores[positions].tolist())
        ids = table["example_id"].to_numpy()[positions].tolist()
        rows = [texts[i] for i in ids]
        return pd.DataFrame({"rank": [rk for rk, _ in ranked], "score": scores[positions].round(4),
                             "label": [decided.summary(i) for i in ids], "source": [r["source"] for r in rows],
                             "instruction": [snippet(r["instruction"], 100) for r in rows],
                             "response": [snippet(r["response"], 160) for r in rows]})

    a1, a2 = st.columns(2)
    a1.caption(f"Kept, just above the cut: the {len(above)} lowest-scored rows kept")
    a1.dataframe(near_cut(above), hide_index=True, key="cut_above")
    a2.caption(f"Left out, just below the cut: the {len(below)} best-scored eligible rows not kept")
    a2.dataframe(near_cut(below), hide_index=True, key="cut_below")

    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.histogram(scores, "Score distribution and the cut", "score",
                                    cut_at=None if cut.blend else cut.threshold),
                    key="cut_hist")
    curve_key = f"cut_curve_{st.session_state.get('cut_curve_clicks', 0)}"
    c2.plotly_chart(plots.threshold_curve(scores[cut.pool], len(cut.kept) / max(cut.eligible, 1)), key=curve_key,
                    on_select=partial(move_cut, rule, scores[cut.pool], curve_key), selection_mode="points")
    c2.caption("Click a point of the curve to move the cut there.")
    c3, c4 = st.columns(2)
    c3.plotly_chart(plots.kept_dropped_histogram(table["words"].to_numpy(), cut.mask,
                                                 "Response length, kept vs dropped", "words"), key="cut_lengths")
    c4.plotly_chart(plots.score_vs_length(scores, table["words"].to_numpy(), cut.mask), key="cut_scatter")

    def save_cut(name_key: str, replace: bool) -> None:
        """Save the cut under the name typed; a name in use asks first (replace keeps the old as a version)."""
        saved = selection.save(store, run.id, st.session_state[name_key], cut, table, replace=replace)
        st.session_state["save_pending"] = saved.selection.name if saved.taken else None
        if not saved.taken:
            st.session_state["selection"] = saved.selection.id
        st.session_state["save_message"] = (saved.taken, saved.message())

    name_key = f"selection_name::{rule}-{value:g}"  # the suggested name follows the cut until the user types one
    st.text_input("Save this selection as", value=f"{rule}-{value:g}", key=name_key, max_chars=200)
    st.button("Save selection", type="primary", key="save_selection", on_click=save_cut, args=(name_key, False))
    taken, said = st.session_state.pop("save_message", (False, None))
    if taken and st.session_state.get("save_pending") == st.session_state[name_key].strip():
        st.warning(said)
        r1, r2 = st.columns(2)
        r1.button("Replace it (the old one stays as an earlier version)", key="save_replace", on_click=save_cut,
                  args=(name_key, True))
        r2.button("Choose another name", key="save_rename", on_click=lambda: st.session_state.pop("save_pending", None))
    elif said:
        st.success(said)

# --------------------------------------------------------------------------- validation: how much to keep?


st.divider()
st.subheader("Does the cut train a better model? Eval NLL (and win rate) against share kept, SCAR cut vs random")


def validation_chart(points: list[dict], untuned_nll: float | None, key: str) -> None:
    """Eval NLL of the cut's and random's tuned models by share kept; the judge's win rate when measured."""
    frame = validation.curve_frame(points, untuned_nll)
    lines = [c for c in ("SCAR cut", "random", "untuned") if c in frame.columns]
    st.line_chart(frame, x="share kept", y=lines, x_label="share of the pool kept",
                  y_label="eval NLL (lower is better)")
    if "cut's win rate vs random" in frame.columns:
        st.line_chart(frame, x="share kept", y=["cut's win rate vs random", "win rate 95% low", "win rate 95% high"],
                      x_label="share of the pool kept", y_label="judge win rate (0.5: a tie)")
    st.dataframe(frame, hide_index=True, key=f"{key}_table")


with st.container():  # one element above the validation's progress, report or not: see validation_progress
    finished = validation.reports(store, run.dataset_id)
    if finished:
        names = {j.id: f"validation job {j.id} (run {j.params['run_id']}, {j.finished_at:%Y-%m-%d %H:%M})"
                 for j in finished}
        shown = st.selectbox("Validation", list(names), format_func=names.get, key="validation_shown")
        report = next(j for j in finished if j.id == shown).result
        validation_chart(report["curve"], report.get("untuned_nll"), "validation")
        s = report["settings"]
        st.caption(f"{report['base_model']['name']} + LoRA r={s['lora_r']}, the cut and a random draw of as many "
                   f"rows at each share, the same answer tokens each; eval: {report['eval']['rows']} "
                   f"{report['eval']['source']} rows, mean NLL of the reference answers (lower is better); "
                   f"{s['device']} {s['precision']}, seed "
                   f"{s['seed']}, {display.duration(report['seconds'])}. Win rate: "
                   + (f"judge {report['judge']['model']}, {report['judge']['rule']}" if report.get("judge")
                      else report.get("win_rate_note") or "not measured"))
    else:
        st.info("No validation of this data set yet: start one below to see how a model tuned on the cut compares "
                "with one tuned on random rows, at several shares kept.")

with st.expander("Validate: fine-tune a small LM on the cut and on random rows at several shares kept "
                 "(background job; a GPU is strongly suggested)", expanded=not finished):
    v1, v2, v3 = st.columns(3)
    ratios_text = v1.text_input("Shares kept", "0.05 0.1 0.25 0.5 1.0", key="val_ratios")
    tune_model = v2.text_input("Model to tune", "default", key="val_model",
                               help="default: the bundled SmolLM2-135M-Instruct; or a causal LM folder on the server")
    eval_rows = v3.number_input("Held-out rows", 1, 100_000, validation.DEFAULT_EVAL_ROWS, key="val_eval_rows",
                                help="a seeded sample of the run's eligible rows, never trained on")
    w1, w2, w3 = st.columns(3)
    val_epochs = w1.number_input("Passes over each cut", 0.1, 20.0, 1.0, step=0.5, key="val_epochs")
    val_device = w2.selectbox("Device", ["auto", "cpu", "cuda"], key="val_device")
    val_tokens = w3.number_input("Tokens per pair", 32, 8192, 256, step=32, key="val_max_tokens")
    j1, j2 = st.columns(2)
    base_url = j1.text_input("Judge base URL (optional)", os.environ.get("OPENAI_BASE_URL", ""), key="val_base_url",
                             placeholder="http://127.0.0.1:8000/v1").strip() or None
    judge_model = j2.text_input("Judge model", key="val_judge_model",
                                help="with a base URL: the judge compares the cut's answers with random's").strip() or None
    plan = None
    try:
        ratios = [float(x) for x in ratios_text.replace(",", " ").split()]
        tune = TuneSettings(epochs=float(val_epochs), max_tokens=int(val_tokens), device=val_device)
        guess = validation.estimate(store, run.id, ratios, tune, int(eval_rows), judge=bool(judge_model), table=table)
        plan = ratios, tune
        where = "CPU" if guess.device == "cpu" else "GPU"
        st.info(f"{2 * len(ratios)} fine-tunes (the cut and random at {len(ratios)} shares): about "
                f"{display.duration(guess.seconds)} on this {where} ({guess.basis})."
                + (" A GPU is strongly suggested." if guess.device == "cpu" else ""))
    except ValueError:
        shared.error(f"Shares kept: numbers between 0 and 1 separated by spaces, got '{ratios_text}'")
    except ScarError as e:
        shared.error(str(e))
    if st.button("Start validation", key="start_validation", disabled=plan is None):
        try:
            started = validation.start_validation(store, run.id, plan[0], settings=plan[1],
                                                  tune_model=tune_model.strip() or "default",
                                                  eval_rows=int(eval_rows), base_url=base_url, judge_model=judge_model)
            st.success(f"Started validation job {started.id}: about {display.duration(started.params['estimate_s'])}.")
        except ScarError as e:
            shared.error(str(e))


@st.fragment(run_every=1.0 if validation.active(store, run.dataset_id) else None)
def validation_progress() -> None:
    """This data set's running validations: progress, time left, the points so far, a cancel button each.

    Streamlit names a fragment by its place on the page and drops a click aimed at a name the last run
    did not draw. So each section above that draws more or fewer elements (quotas, clusters, the cut's
    captions, evidence and save messages, a finished validation's report) is one container, and the
    signals' settings are one above the signal job's progress: both Cancel buttons keep their names
    while a job ends or a setting changes (test_select_page.py)."""
    running = validation.active(store, run.dataset_id)
    watching = st.session_state.setdefault("validations_watched", set())
    if watching - {j.id for j in running}:
        watching.clear()
        st.rerun()  # one ended: its report shows above
    for job in running:
        watching.add(job.id)
        left = f" · about {display.duration(job.eta_s)} left" if job.eta_s else ""
        st.progress(min(job.done / job.total, 1.0) if job.total else 0.0,
                    text=f"validation job {job.id}: {job.message or job.status} · {job.done}/{job.total} models{left}")
        if st.button("Cancel", key=f"cancel_validation_{job.id}"):
            background.cancel(store, job.id)
            st.rerun()
        if job.params.get("points"):
            validation_chart(job.params["points"], None, f"validation_{job.id}")
    ended = validation.latest(store, run.dataset_id)
    if not running and ended is not None and ended.status != "done":
        st.caption(f"Latest validation job {ended.id}: {ended.status}"
                   + (f": {ended.error.splitlines()[0]}" if ended.error else "."))


validation_progress()
