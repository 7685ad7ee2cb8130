"""Train: synthesise and judge training rows from a dataset (or use a training file), train a ranker
in a background job, and watch loss and validation accuracy per epoch."""
import pandas as pd
import streamlit as st

from db import jobs
from pages import shared
from scar_core import plots
from scar_core.jobs import runner as background, train as train_job
from scar_core.errors import ScarError

store = shared.store()
st.header("Train a ranker")
with st.container():  # one element above the progress, however many the settings draw: see progress
    source = st.radio("Training rows", ["synthesise from a dataset", "a training file on the server"], horizontal=True,
                      key="train_source")
    dataset_id = training_file = None
    if source == "synthesise from a dataset":
        dataset_id = shared.pick_dataset(store)
        b1, b2, b3 = st.columns(3)
        backend = b1.selectbox("LLM back end", ["local", "openai"], key="train_backend",
                               help="local: the bundled SmolLM2-135M (slow, small); "
                                    "openai: any OpenAI-compatible server")
        limit = b2.number_input("Human pairs to use", 2, 100_000, 100, key="train_limit")
        judge = b3.checkbox("Judge quality (scores for the quality constraint)", value=True, key="train_judge")
        model = st.text_input("Model (local: .gguf or folder; openai: model name)", key="train_model").strip() or None
        base_url = (st.text_input("Base URL (openai)", key="train_base_url", placeholder="http://127.0.0.1:8000/v1")
                    .strip() or None) if backend == "openai" else None
    else:
        training_file = st.text_input("Training JSONL (rows with instruction, human, referenced, direct)",
                                      key="train_file").strip() or None
        backend, limit, judge, model, base_url = "local", 0, False, None, None
    t1, t2, t3, t4 = st.columns(4)
    encoder = t1.text_input("Encoder to start from", "minilm", key="train_encoder")
    epochs = t2.number_input("Epochs", 1, 50, 3, key="train_epochs")
    freeze = t3.checkbox("Freeze the encoder", value=True, key="train_freeze",
                         help="train the head only on cached encoder outputs: fast on a CPU")
    device = t4.selectbox("Device", ["auto", "cpu", "cuda"], key="train_device")
    s1, s2, s3 = st.columns(3)
    init = s1.text_input("Or start from a trained ranker", key="train_init",
                         placeholder="default, or a checkpoint folder",
                         help="continue from its encoder and head (e.g. adapt the default ranker to your data); "
                              "the encoder above is then not used").strip() or None
    debias = s2.checkbox("Length-debias the training rows", value=False, key="train_debias",
                         help="add copies whose LLM answer is cut shorter than the human answer, so the ranker "
                              "cannot learn 'longer wins'")
    lm_term = s3.checkbox("Add an LM surprisal term", value=False, key="train_lm",
                          help="score also by how predictable each response (text copied from the prompt aside) is to "
                               "the bundled small LM (SmolLM2); generalises better to new sources, but scoring then "
                               "runs that LM too (slower on CPU)")
    out = st.text_input("Output folder name", "my-ranker", key="train_out")

    if st.button("Start training", type="primary", key="start_train",
                 disabled=dataset_id is None and not training_file):
        try:
            job = train_job.submit_train(store, train_job.ranker_folder(store, out), dataset_id=dataset_id,
                                         training_file=training_file, backend=backend, model=model, base_url=base_url,
                                         limit=int(limit), judge=judge, encoder=encoder.strip() or "minilm",
                                         epochs=int(epochs), freeze_encoder=freeze, device=device, length_debias=debias,
                                         init=init, lm_surprisal=lm_term)
            st.session_state["train_job"] = job.id
            st.success(f"Started training job {job.id}.")
        except ScarError as e:
            shared.error(str(e))

history = jobs.list_jobs(store, "train")
if not history:
    st.stop()
names = {j.id: f"job {j.id}: {j.params.get('out', '')} · {j.status}" for j in history}
current = st.session_state.get("train_job")
shown = st.selectbox("Training job", list(names), format_func=names.get, key="_train_job",
                     index=list(names).index(current) if current in names else 0)
st.session_state["train_job"] = shown
running = jobs.get_job(store, shown).status in ("queued", "running")


@st.fragment(run_every=1.0 if running else None)
def progress() -> None:
    """The job's phase, progress, and the loss / validation accuracy of each finished epoch.

    Streamlit names a fragment by its place on the page and drops a click aimed at a name the last run
    did not draw; the settings above are one container, so Cancel keeps its name whichever settings they
    show and whether a start just said how it went (test_app.py)."""
    job = jobs.get_job(store, shown)
    if running and job.status not in ("queued", "running"):
        st.rerun()
    st.progress(job.done / job.total if job.total else 0.0, text=f"{job.status}: {job.message or ''}")
    if job.status in ("queued", "running") and st.button("Cancel", key="cancel_train"):
        background.cancel(store, job.id)
    epochs_done = pd.DataFrame(job.params.get("history") or [], columns=["epoch", "loss", "val_accuracy"])
    if len(epochs_done):
        st.plotly_chart(plots.training_curve(epochs_done), key="train_curve")
        st.dataframe(epochs_done, hide_index=True)
    if job.status == "done":
        st.success(f"Best epoch {job.result.get('best_epoch')} (validation accuracy "
                   f"{job.result.get('best_val_accuracy')}); the ranker is listed under 'trained' on the Rank page.")
    elif job.error:
        shared.error(f"Training {job.status}: {job.error.splitlines()[0]}")
    if job.status in ("failed", "cancelled", "interrupted") and st.button("Resume", key="resume_train"):
        background.resume(store, job.id)
        st.rerun()


progress()
