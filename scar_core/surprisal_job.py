"""The surprisal job: measure a run's responses under a small causal LM in a worker process
(scar_core.diagnostics.surprisal) and keep each value with its result row, as
`diagnostics["surprisal"] = {"lm", "nll", "perplexity", "tokens", "truncated"}`.

Values are committed chunk by chunk, so a cancelled or killed job resumes where it stopped; rows
already measured with the same LM are never measured again, and scoring runs answered from the
store copy them with the scores. Its worker is the generic `python -m scar_core worker JOB_ID`
(kind "surprisal" in scar_core.jobs.KINDS).
"""
from __future__ import annotations

import time

import numpy as np

from db import datasets, jobs, runs
from db.models import Job
from db.store import Store
from scar_core import jobs as background
from scar_core.diagnostics.surprisal import DEFAULT_LM, iter_surprisal, load_language_model, sample_rows
from scar_core.errors import ScarError


def submit_surprisal(store: Store, run_id: int, lm: str = DEFAULT_LM, sample: int | None = None, seed: int = 0,
                     device: str = "auto", precision: str = "auto", launch: bool = True) -> Job:
    """Queue a surprisal job for a finished run (all rows, or a seeded sample) and start its worker."""
    run = runs.get_run(store, run_id)
    if run is None:
        raise ScarError(f"no scoring run {run_id} in the store")
    if run.status != "done":
        raise ScarError(f"run {run_id} is {run.status}; measure surprisal on a finished run")
    job = jobs.create_job(store, "surprisal", {"run_id": run_id, "lm": lm, "sample": sample, "seed": seed,
                                               "device": device, "precision": precision})
    if launch:
        background.start_worker(store, job.id)
    return job


def run_surprisal(store: Store, job: Job, beat: background.Beat) -> None:
    """Worker body: pick the rows, skip those already measured with this LM, measure and commit the rest."""
    p = job.params
    run_id, lm_name = int(p["run_id"]), p.get("lm", DEFAULT_LM)
    rows = runs.results_with_diagnostics(store, run_id)
    chosen = [rows[i] for i in sample_rows(len(rows), p.get("sample"), int(p.get("seed", 0)))]
    todo = [r for r in chosen if ((r["diagnostics"] or {}).get("surprisal") or {}).get("lm") != lm_name]
    total, done = len(chosen), len(chosen) - len(todo)
    beat.result = {"measured": 0, "already": done, "lm": lm_name}
    if store.transact(lambda s: jobs.report(s, job.id, done, total, None,
                                            f"loading {lm_name}" if todo else "already measured")):
        raise background.Cancelled
    if not todo:
        return
    lm = load_language_model(lm_name, p.get("device", "auto"), p.get("precision", "auto"))
    examples = [datasets.to_core(_Row(r)) for r in todo]
    started, measured = time.perf_counter(), 0
    for part in iter_surprisal(examples, lm, chunk_rows=32):
        values = {todo[i]["example_id"]: {"surprisal": {
            "lm": lm_name, "nll": _finite(part.nll[k]), "perplexity": _finite(part.perplexity[k]),
            "tokens": int(part.tokens[k]), "truncated": bool(part.truncated[k])}}
            for k, i in enumerate(part.index.tolist())}
        measured += len(values)
        rate = measured / max(time.perf_counter() - started, 1e-9)

        def commit(session, values=values, rate=rate) -> bool:
            runs.merge_diagnostics(session, run_id, values)
            return jobs.report(session, job.id, done + measured, total, rate, "measuring surprisal")

        cancel_requested = store.transact(commit)
        beat.result = {"measured": measured, "already": done, "lm": lm_name}
        if beat.progress:
            beat.progress(done + measured, total, rate)
        if cancel_requested or beat.cancel_requested:
            raise background.Cancelled


class _Row:
    """Attribute access to a result row, the shape `datasets.to_core` reads."""

    def __init__(self, row: dict):
        self.__dict__.update(row)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
