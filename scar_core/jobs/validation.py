"""The validation job: how much to keep? Eval NLL (and a judge's win rate) against the share of a scoring
run's pool kept, SCAR cut vs random, from LoRA fine-tunes in a worker process (scar_core.validate's curve).

A job of kind "validate" holds its settings in Job.params and, when done, the report in Job.result; the
points measured so far are in params["points"] while it runs, so the Select page can draw the curve as it
grows. A data set's validation reports are its runs' finished "validate" jobs. The held-out set is a
seeded sample of the run's eligible rows (or the user's file), never trained on at any share. The time
estimate shown before starting comes from the rates the latest finished validation on the same kind of
device measured, else from a prior measured by bench/validate.py (CPU) or a stated guess (GPU).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from db import browse, datasets, jobs, runs
from db.models import Job
from db.store import Store
from scar_core import validate
from scar_core.device import resolve
from scar_core.errors import ScarError
from scar_core.jobs import access
from scar_core.jobs.runner import Beat, Cancelled, start_worker
from scar_core.jobs.selection import run_table
from scar_core.select import eligible_rows
from scar_core.synth.cache import CallCache

KIND = "validate"
DEFAULT_RATIOS = (0.05, 0.1, 0.25, 0.5, 1.0)
DEFAULT_EVAL_ROWS = 100
CHARS_PER_TOKEN = 4.0  # a rough size of a token in English text, for the estimate only
TEMPLATE_TOKENS = 16   # what the chat template adds around a pair
SIZE_ROWS = 500        # the estimate sizes a pair from this many of the data set's first rows
# Rates when no validation has run on this kind of device: training tokens (prompt + answer) per second,
# eval rows per second, generated tokens per second. CPU: bench/validate.py on 2 AMD EPYC cores (bf16,
# SmolLM2-135M, LoRA r=8, max 256 tokens): 133,892 tokens trained in 1,074 s, 100 eval rows in 36 s;
# generation: validate.generate with SmolLM2-135M, 71 tokens in 61 s on the same 2 cores under a load
# average of 7.7 (a shared machine; an idle one is faster). GPU: guesses, no GPU run measured here.
PRIOR_RATES = {"cpu": {"train": 125.0, "eval": 2.8, "generate": 1.2},
               "cuda": {"train": 5000.0, "eval": 60.0, "generate": 60.0}}


def settings_of(job: Job) -> validate.Settings:
    return validate.Settings(**job.params["settings"])


@dataclass(frozen=True)
class Estimate:
    """How long a validation would take here: seconds per tuned model (in order) and in all."""

    models: list[float]
    untuned: float
    device: str
    basis: str  # where the rates came from, in words

    @property
    def seconds(self) -> float:
        return self.untuned + sum(self.models)


def estimate(store: Store, run_id: int, ratios: list[float], settings: validate.Settings,
             eval_rows: int = DEFAULT_EVAL_ROWS, judge: bool = False, table: pd.DataFrame | None = None) -> Estimate:
    """Seconds to tune and evaluate the cut and random at each ratio of the run's pool (and generate the
    judge's answers), from this device's measured rates (the latest finished validation job on the same
    kind of device) or the priors above. `table`: the run's (run_table), when the caller has it."""
    run = _run(store, run_id)
    device = resolve(settings.device, settings.precision)[0].type
    table = run_table(store, run_id) if table is None else table
    score = table["score"].to_numpy(dtype=np.float64)
    free = int(eligible_rows(score, table["duplicate_cluster"].to_numpy(),
                             table["left_out_by"].to_numpy(dtype=object))[0].sum())
    pool = max(free - min(eval_rows, free // 2), 1)
    head = datasets.examples(store, run.dataset_id, 0, SIZE_ROWS)  # a pair's size, from the first rows
    chars = sum(len(r.instruction) + len(r.response) for r in head) / max(len(head), 1)
    per_row = min(settings.max_tokens, chars / CHARS_PER_TOKEN + TEMPLATE_TOKENS)
    rates, basis = measured_rates(store, device)
    per_model = []
    for ratio in ratios:
        k = math.ceil(pool * ratio)
        rows_seen = settings.steps_for(k) * settings.batch_size if settings.steps else math.ceil(
            (settings.epochs or 1.0) * k)
        seconds = (rows_seen * per_row / rates["train"] + eval_rows / rates["eval"]
                   + (min(settings.judge_rows or eval_rows, eval_rows) * settings.gen_tokens / rates["generate"]
                      if judge else 0.0))
        per_model += [seconds, seconds]  # the cut, then random with the same answer tokens
    return Estimate(per_model, eval_rows / rates["eval"], device, basis)


def measured_rates(store: Store, device: str) -> tuple[dict[str, float], str]:
    """({train, eval, generate} rates, where they came from): the latest finished validation on this kind
    of device, else the priors."""
    for job in jobs.list_jobs(store, KIND, limit=20):
        rates = (job.result or {}).get("rates") or {}
        if job.status == "done" and rates.get("device") == device and rates.get("train"):
            merged = {**PRIOR_RATES.get(device, PRIOR_RATES["cuda"]),
                      **{k: v for k, v in rates.items() if k != "device" and v}}
            return merged, f"rates measured by validation job {job.id} on this {device.upper()}"
    where = ("bench/validate.py on 2 CPU cores; generation a guess" if device == "cpu"
             else "a guess: no GPU validation measured yet")
    return dict(PRIOR_RATES.get(device, PRIOR_RATES["cuda"])), f"no validation measured here yet: rates from {where}"


@access.action("validate", run="run_id", what="started validating the cuts of run {run_id}")
def start_validation(store: Store, run_id: int, ratios: list[float] | tuple[float, ...] = DEFAULT_RATIOS, *,
                     settings: validate.Settings | None = None, tune_model: str = validate.DEFAULT_MODEL,
                     eval_rows: int = DEFAULT_EVAL_ROWS, eval_path: str | None = None,
                     base_url: str | None = None, judge_model: str | None = None, launch: bool = True) -> Job:
    """Queue a validation of a scoring run (a job of kind "validate") and start its worker: the curve of eval
    NLL, and with `base_url` and `judge_model` the judge's win rate, against the share kept, SCAR cut vs
    random. Everything that can be checked without a model is checked here; the estimate is kept with it."""
    run = _run(store, run_id)
    if run.status != "done":
        raise ScarError(f"run {run_id} is {run.status}: validate a finished scoring run")
    settings = settings or validate.Settings(epochs=1.0, max_tokens=256)
    settings.check()
    ratios = sorted({float(r) for r in ratios})
    if not ratios or not all(0 < r <= 1 for r in ratios):
        raise ScarError(f"shares kept must lie in (0, 1], got {ratios}")
    if eval_rows < 1:
        raise ScarError(f"eval rows must be at least 1, got {eval_rows}")
    if eval_path is not None and not Path(eval_path).is_file():
        raise ScarError(f"{eval_path}: no such file (held-out prompts)")
    if bool(base_url) != bool(judge_model):
        raise ScarError("the judge needs both a base URL (an OpenAI-compatible server, e.g. "
                        "http://127.0.0.1:8000/v1) and a model name; give both or neither")
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ScarError(f"the judge's base URL must start with http:// or https://, got '{base_url}'")
    guess = estimate(store, run_id, ratios, settings, eval_rows, judge=bool(judge_model))
    params = {"run_id": run_id, "dataset_id": run.dataset_id, "ratios": ratios, "settings": asdict(settings),
              "tune_model": tune_model, "eval_rows": int(eval_rows), "eval_path": eval_path, "base_url": base_url,
              "judge_model": judge_model, "estimate_s": guess.seconds, "estimate_models": guess.models,
              "estimate_untuned": guess.untuned, "estimate_basis": guess.basis, "points": [],
              "started_by": access.acting(store)}
    job = jobs.create_job(store, KIND, params)
    store.transact(lambda s: jobs.report(s, job.id, 0, 2 * len(ratios), None, "starting the worker",
                                         eta_s=guess.seconds))
    if launch:
        start_worker(store, job.id)
    return jobs.get_job(store, job.id)


def run_validation(store: Store, job: Job, beat: Beat) -> None:
    """Worker body: read the run, hold rows out, evaluate the untuned model, then tune and evaluate the cut
    and random at each share kept; progress counts models, the ETA scales the estimate by the pace so far."""
    p = job.params
    settings = settings_of(job)
    total = 2 * len(p["ratios"])
    started = time.perf_counter()

    def report(done: int, message: str, expected_done: float) -> None:
        elapsed = time.perf_counter() - started
        left = p["estimate_s"] - expected_done
        pace = elapsed / expected_done if expected_done > 0 else 1.0
        if store.transact(lambda s: jobs.report(s, job.id, done, total, None, message, eta_s=max(left, 0) * pace)):
            raise Cancelled
        if beat.cancel_requested:
            raise Cancelled

    report(0, "reading the run", 0.0)
    table = run_table(store, p["run_id"])
    rows = {r.id: r for r in datasets.examples(store, p["dataset_id"], 0, None)}
    pool = [datasets.to_core(rows[int(i)]) for i in table["example_id"]]
    score = table["score"].to_numpy(dtype=np.float64)
    clusters = table["duplicate_cluster"].to_numpy()
    left_out_by = table["left_out_by"].to_numpy(dtype=object)
    if p.get("eval_path"):
        held = np.zeros(0, np.int64)
        eval_examples = validate.sample(validate.read_eval(p["eval_path"]), p["eval_rows"], settings.seed)
        eval_info = {"source": "file", "path": p["eval_path"], "rows": len(eval_examples),
                     "how": "a seeded sample of the file's rows; pool rows with the same content id are never trained on"}
    else:
        held = validate.held_out_scored(pool, score, clusters, left_out_by, p["eval_rows"], settings.seed)
        eval_examples = [pool[i] for i in held]
        eval_info = {"source": "held-out split of the run's pool", "path": None, "rows": len(eval_examples),
                     "how": f"a seeded sample (seed {settings.seed}) of the run's eligible rows, left out of every "
                            "subset with their duplicate clusters"}
    report(0, f"loading the model to tune ({p['tune_model']})", 0.0)
    base = validate.load_base(p["tune_model"])
    judge = None
    if p.get("judge_model"):
        from scar_core.synth.openai_backend import OpenAIBackend

        judge = validate.Judge(OpenAIBackend(p["base_url"], p["judge_model"]), base_url=p["base_url"],
                               cache=CallCache(judge_cache(store)))
    report(0, "evaluating the untuned model", 0.0)
    untuned = validate.evaluate(base.model, base.tokenizer, eval_examples, settings, "untuned")
    points: list[dict] = []
    expected = list(np.cumsum([p["estimate_untuned"], *p["estimate_models"]]))

    def on_point(point: dict) -> None:
        points.append(point)
        jobs.set_params(store, job.id, points=points)
        done = len(points)
        nxt = "" if done == total else f"; next: {'cut' if done % 2 == 0 else 'random'} at " \
                                         f"{p['ratios'][done // 2]:g} of the pool"
        report(done, f"{point['subset']} at {point['ratio']:g}: eval NLL {point['eval_nll']:.4f}{nxt}", expected[done])

    report(0, f"tuning the cut at {p['ratios'][0]:g} of the pool", expected[0])
    try:
        curve = validate.curve_points(pool, score, clusters, left_out_by, held, eval_examples, base, settings,
                                      p["ratios"], judge=judge, log=lambda message: None, on_point=on_point)
    finally:
        if judge:
            judge.close()
    beat.result = {
        "what": "eval NLL (and the judge's win rate) against the share of the pool kept, SCAR cut vs random: "
                "LoRA fine-tunes of one base model with the same answer-token budget at each share",
        "run_id": p["run_id"], "dataset_id": p["dataset_id"], "base_model": base.describe(),
        "settings": validate.settings_record(settings),
        "eval": {**eval_info, "answer_tokens": int(untuned.tokens.sum()), "metric": validate.NLL_METRIC},
        "untuned_nll": untuned.nll, "curve": curve,
        "judge": ({**judge.describe(), "rule": validate.WIN_RULE, "against": "random"} if judge else None),
        "win_rate_note": None if judge else validate.NO_JUDGE,
        "seconds": round(time.perf_counter() - started, 1), "rates": rates_of(curve, untuned, settings, eval_examples),
        "versions": validate.library_versions(),
    }


def judge_cache(store: Store) -> Path:
    """The app's judge call cache, one for the store (in its data folder): a validation that stopped part
    way, started again with the same settings, asks the judge only what it had not answered."""
    return browse.data_folder(store) / "judge-cache.sqlite"


def rates_of(curve: list[dict], untuned: validate.Scored, settings: validate.Settings, eval_examples: list) -> dict:
    """The rates a finished validation measured, for later estimates on this kind of device."""
    device = resolve(settings.device, settings.precision)[0].type
    train_s = sum(c["train_seconds"] for c in curve)
    generated = sum(c.get("generated", 0) for c in curve) * settings.gen_tokens
    gen_s = sum(c.get("generate_seconds", 0.0) for c in curve)
    eval_s = untuned.seconds + sum(c["eval_seconds"] for c in curve)
    return {"device": device, "train": sum(c["input_tokens"] for c in curve) / train_s if train_s else None,
            "eval": (1 + len(curve)) * len(eval_examples) / eval_s if eval_s else None,
            "generate": generated / gen_s if generated and gen_s else None}


def reports(store: Store, dataset_id: int) -> list[Job]:
    """The data set's finished validations (jobs of kind "validate" that are done), newest first."""
    return [j for j in jobs.list_jobs(store, KIND, limit=200)
            if j.status == "done" and (j.params or {}).get("dataset_id") == dataset_id]


def active(store: Store, dataset_id: int) -> list[Job]:
    """The data set's queued or running validations, newest first (stale workers marked interrupted first)."""
    jobs.mark_stale(store)
    return [j for j in jobs.list_jobs(store, KIND, limit=200)
            if j.status in ("queued", "running") and (j.params or {}).get("dataset_id") == dataset_id]


def latest(store: Store, dataset_id: int) -> Job | None:
    """The data set's newest validation job, whatever its status."""
    return next((j for j in jobs.list_jobs(store, KIND, limit=200) if (j.params or {}).get("dataset_id") == dataset_id),
                None)


def curve_frame(points: list[dict], untuned_nll: float | None = None) -> pd.DataFrame:
    """One row per share kept: eval NLL of the SCAR cut's and random's models (and the untuned model's, the
    same at every share), and the cut's win rate against random with its 95% interval, for the chart."""
    frame = pd.DataFrame([{"share kept": c["ratio"], "subset": c["subset"], "eval NLL": c["eval_nll"]}
                          for c in points])
    if frame.empty:
        return pd.DataFrame(columns=["share kept", "SCAR cut", "random"])
    wide = frame.pivot_table(index="share kept", columns="subset", values="eval NLL").rename(
        columns={"cut": "SCAR cut"}).reset_index()
    wide.columns.name = None
    if untuned_nll is not None:
        wide["untuned"] = untuned_nll
    wins = {c["ratio"]: c["win_vs_random"] for c in points if c["subset"] == "cut" and c.get("win_vs_random")}
    if wins:
        wide["cut's win rate vs random"] = wide["share kept"].map(lambda r: wins[r]["win_rate"] if r in wins else None)
        wide["win rate 95% low"] = wide["share kept"].map(lambda r: wins[r]["ci95"][0] if r in wins else None)
        wide["win rate 95% high"] = wide["share kept"].map(lambda r: wins[r]["ci95"][1] if r in wins else None)
    return wide


def _run(store: Store, run_id: int):
    run = runs.get_run(store, run_id)
    if run is None:
        raise ScarError(f"no run {run_id} in the store")
    return run
