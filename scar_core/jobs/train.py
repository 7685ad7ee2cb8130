"""The train job: human pairs of a stored dataset -> synthesised and judged training rows
(scar_core.synth) -> a trained ranker (scar_core.train), in a worker process, registered in the
store so the Rank page offers it.

Phases report progress on the job ("generate", "judge", "encode", "train") and each finished
epoch's loss and validation pairwise accuracy go into the job's params as `history`, so the app
can draw the curves while training runs. Synthesis calls are cached on disk next to the output,
so resuming a job (scar_core.jobs.resume) sends only the calls that never finished. Its worker is
the generic `python -m scar_core worker JOB_ID` (kind "train" in scar_core.jobs.KINDS).
"""
from __future__ import annotations

from pathlib import Path

from db import browse, datasets, jobs, rankers
from db.models import Job
from db.store import Store
from scar_core.jobs import access, runner as background
from scar_core.errors import ScarError
from scar_core.export import export_target


# Reply lengths per back end: the bundled CPU model writes a few sentences per call in reasonable time,
# a served LLM gets room for full answers.
REPLY_TOKENS = {"local": {"max_tokens": 64, "judge_max_tokens": 16},
                "openai": {"max_tokens": 512, "judge_max_tokens": 64}}


def ranker_folder(store: Store, name: str) -> Path:
    """Where the app puts a ranker trained under `name`: `rankers/NAME` beside the store's data folders."""
    return export_target(browse.rankers_folder(store), name.strip() or "my-ranker", suffix="")


@access.action("train", what="started training a ranker into {out}")
def submit_train(store: Store, out: str | Path, dataset_id: int | None = None, training_file: str | None = None,
                 backend: str = "local", model: str | None = None, base_url: str | None = None,
                 limit: int = 200, judge: bool = True, encoder: str = "minilm", epochs: int = 3,
                 freeze_encoder: bool = True, device: str = "auto", length_debias: bool = False,
                 init: str | None = None, lm_surprisal: bool = False, launch: bool = True) -> Job:
    """Queue a train job: synthesise from `dataset_id` (first `limit` pairs) or use `training_file`.

    `init` starts from a trained ranker ("default" or a checkpoint folder) instead of a fresh head on
    `encoder`; `length_debias` adds rows whose LLM answer is shortened (scar_core.training_data);
    `lm_surprisal` adds the bundled LM's term to the score (scar_core.ranker.LMTerm)."""
    if (dataset_id is None) == (training_file is None):
        raise ScarError("give either a dataset to synthesise from or an existing training file")
    # team mode: every server path typed here is read only inside the data folders (or the app's rankers)
    training_file = training_file and str(access.readable(store, training_file))
    if init and init != "default":
        init = str(access.readable(store, init, also=(browse.rankers_folder(store),), kind="folder"))
    if backend == "local" and model:
        model = str(access.readable(store, model, kind="any"))
    if training_file is not None and not Path(training_file).is_file():
        raise ScarError(f"{training_file}: no such file")
    if dataset_id is not None and datasets.get_dataset(store, dataset_id) is None:
        raise ScarError(f"no dataset {dataset_id} in the store")
    if backend == "openai" and not base_url:
        raise ScarError("the openai back end needs a base URL, e.g. http://127.0.0.1:8000/v1")
    from scar_core.device import resolve_device

    resolve_device(device)
    if init and init != "default" and not (Path(init).expanduser() / "config.json").is_file():
        raise ScarError(f"{init}: not a ranker checkpoint (no config.json); give 'default' or a checkpoint folder")
    params = {"out": str(Path(out).expanduser().resolve()), "dataset_id": dataset_id, "training_file": training_file,
              "backend": backend, "model": model, "base_url": base_url, "limit": int(limit), "judge": judge,
              "encoder": encoder, "epochs": int(epochs), "freeze_encoder": freeze_encoder, "device": device,
              "length_debias": length_debias, "init": init, "lm_surprisal": lm_surprisal, "history": []}
    job = jobs.create_job(store, "train", {**params, "started_by": access.acting(store)})
    if launch:
        background.start_worker(store, job.id)
    return job


def run_train(store: Store, job: Job, beat: background.Beat) -> None:
    """Worker body: synthesise (unless a training file was given), train, save and register the ranker."""
    from scar_core.lm import DEFAULT_LM
    from scar_core.train import TrainConfig, TrainProgress, start_ranker, train
    from scar_core.training_data import read_training_rows

    p = job.params
    out = Path(p["out"])
    out.mkdir(parents=True, exist_ok=True)
    data = Path(p["training_file"]) if p.get("training_file") else _synthesise(store, job, beat, out)
    rows = read_training_rows([data])
    history: list[dict] = []

    def show(t: TrainProgress) -> None:
        if beat.cancel_requested:
            raise background.Cancelled
        if t.phase == "epoch":
            history.append({"epoch": t.epoch, "loss": t.loss, "val_accuracy": t.val_accuracy})
            jobs.set_params(store, job.id, history=history)
        elif t.step % 5 == 0 or t.step == t.steps:
            what = {"lm": "measuring LM surprisal", "encode": "encoding texts"}.get(
                t.phase, f"training, epoch {t.epoch}/{t.epochs}")
            store.transact(lambda s: jobs.report(s, job.id, t.step, t.steps, None, what))

    ranker = start_ranker(p.get("init"), p["encoder"], lm=DEFAULT_LM if p.get("lm_surprisal") else None)
    config = TrainConfig(epochs=p["epochs"], freeze_encoder=p["freeze_encoder"], device=p["device"],
                         length_debias=bool(p.get("length_debias")))
    result = train(ranker, rows, config, out=out / "ranker", progress=show,
                   metadata={"data": str(data), "job": job.id})
    registered = rankers.register_ranker(store, out.name, str(result.out), ranker.identity, ranker.encoder_name,
                                         recipe={"data": str(data), "epochs": p["epochs"],
                                                 "freeze_encoder": p["freeze_encoder"], "init": p.get("init"),
                                                 "length_debias": bool(p.get("length_debias")),
                                                 "lm_surprisal": bool(p.get("lm_surprisal"))},
                                         metrics={"best_epoch": result.best_epoch,
                                                  "best_val_accuracy": result.best_val_accuracy})
    beat.result = {**result.summary(), "ranker_id": registered.id}


def _synthesise(store: Store, job: Job, beat: background.Beat, out: Path) -> Path:
    """Write training rows for the dataset's first `limit` pairs; returns the JSONL path."""
    from scar_core.synth.pipeline import SynthProgress, synthesize

    p = job.params
    pairs = [datasets.to_core(row) for row in datasets.examples(store, p["dataset_id"], 0, p["limit"])]
    if not pairs:
        raise ScarError(f"dataset {p['dataset_id']} has no pairs to synthesise from")
    store.transact(lambda s: jobs.report(s, job.id, 0, 2 * len(pairs), None, "loading the language model"))
    if p["backend"] == "openai":
        from scar_core.synth.openai_backend import OpenAIBackend

        client = OpenAIBackend(p["base_url"], p["model"] or "default")
    else:
        from scar_core.synth.local_backend import LocalBackend

        client = LocalBackend(p["model"], device=p["device"])

    def show(s: SynthProgress) -> None:
        if beat.cancel_requested:
            raise background.Cancelled
        store.transact(lambda session: jobs.report(session, job.id, s.done, s.total, None,
                                                   f"{s.phase}: {s.done}/{s.total} calls ({s.cached} cached)"))

    target = out / "training.jsonl"
    try:
        synthesize(pairs, client, target, judge=p["judge"], progress=show, **REPLY_TOKENS[p["backend"]])
    finally:
        client.close()
    return target
