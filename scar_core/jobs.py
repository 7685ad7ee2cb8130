"""Background jobs: a row in the store plus a worker process, so the UI never blocks and a crash
loses at most the chunk in flight.

The scoring worker commits results chunk by chunk together with its progress; re-running a job
scores only the rows still missing (a unique run_id + example_id constraint rules out duplicates).
A heartbeat thread keeps `heartbeat_at` fresh and watches the cancel flag; when the main loop does
not stop at the next chunk boundary it is interrupted.
"""
from __future__ import annotations

import _thread
import importlib
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from db import datasets, jobs, rankers, runs
from db.models import Job, Run
from db.store import Store
from scar_core.errors import ScarError

# Every job kind and its worker body "module:function(store, job, beat)"; imported only when a job runs.
KINDS: dict[str, str] = {
    "score": "scar_core.jobs:run_score",
    "map": "scar_core.map_job:run_map",
    "surprisal": "scar_core.surprisal_job:run_surprisal",
    "train": "scar_core.train_job:run_train",
}
HEARTBEAT_S = 2.0
CANCEL_GRACE_S = 5.0
ROOT = Path(__file__).resolve().parent.parent
Progress = Callable[[int, int, float], None]


class Cancelled(Exception):
    """The job's cancel flag was seen by the worker."""


def submit_score(store: Store, dataset_id: int, model: str = "default", encoder: str | None = None,
                 device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                 chunk_rows: int | None = None, launch: bool = True) -> Run:
    """Create a scoring run for a dataset. Rows already scored with the same ranker (weights and LM term
    settings) and precision (matched by content id) are copied at once; when nothing is left the run is
    done without loading a model, otherwise a worker process is started (launch=False leaves the job
    queued for `run_job`)."""
    from scar_core.score import resolve_device, resolve_precision

    if datasets.get_dataset(store, dataset_id) is None:
        raise ScarError(f"no dataset {dataset_id} in the store")
    ranker = rankers.register_checkpoint(store, model, encoder)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    precision_name = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(dtype)]
    job = jobs.create_job(store, "score", {"model": str(model), "encoder": encoder, "batch_size": batch_size,
                                           "chunk_rows": chunk_rows or default_chunk_rows(dev.type)})
    run = runs.create_run(store, dataset_id, ranker.id, str(dev), precision_name,
                          {"model": str(model), "encoder": encoder, "batch_size": batch_size}, job_id=job.id)
    jobs.set_params(store, job.id, run_id=run.id)
    runs.fill_from_cache(store, run.id)
    total = datasets.count_examples(store, dataset_id)
    done = runs.count_done(store, run.id)
    if done == total:
        store.transact(lambda s: jobs.report(s, job.id, done, total, None, "answered from the store"))
        jobs.finish(store, job.id, "done", result={"scored": 0, "from_cache": done})
    elif launch:
        start_worker(store, job.id)
    return runs.get_run(store, run.id)


def default_chunk_rows(device_type: str) -> int:
    """Rows per commit: a few seconds of work (about 20-60 pairs/s on 2 CPU cores, thousands on a GPU)."""
    return 2048 if device_type == "cuda" else 64


def start_worker(store: Store, job_id: int) -> int:
    """Start `python -m scar_core worker JOB_ID --db URL` in its own session; returns its pid."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "scar_core", "worker", str(job_id), "--db", store.url],
                               cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    jobs.record_launch(store, job_id, process.pid)
    return process.pid


def cancel(store: Store, job_id: int) -> Job:
    """Request a cancel; the worker stops within seconds and keeps the rows it committed."""
    return jobs.request_cancel(store, job_id)


def resume(store: Store, job_id: int, launch: bool = True) -> Job:
    """Queue an interrupted, failed or cancelled job again and start a worker for the remaining work."""
    jobs.mark_stale(store)
    job = jobs.reset_for_resume(store, job_id)
    if job.status == "queued" and launch:
        start_worker(store, job_id)
    return jobs.get_job(store, job_id)


def run_job(store: Store, job_id: int, progress: Progress | None = None) -> Job:
    """Run a job in this process until it is done, cancelled or failed; returns the final row."""
    job = jobs.claim(store, job_id)
    if job.kind not in KINDS:
        jobs.finish(store, job_id, "failed", error=f"unknown job kind '{job.kind}'")
        return jobs.get_job(store, job_id)
    module, name = KINDS[job.kind].split(":")
    work = getattr(importlib.import_module(module), name)
    beat = Beat(store, job_id, progress)
    beat.start()
    try:
        work(store, job, beat)
    except (Cancelled, KeyboardInterrupt) as e:
        if not beat.cancel_requested and isinstance(e, KeyboardInterrupt):
            jobs.finish(store, job_id, "interrupted", error="interrupted by the user")
            raise
        jobs.finish(store, job_id, "cancelled")
    except ScarError as e:
        jobs.finish(store, job_id, "failed", error=str(e))
    except Exception as e:
        jobs.finish(store, job_id, "failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
    else:
        jobs.finish(store, job_id, "done", result=beat.result)
    finally:
        beat.stop()
    return jobs.get_job(store, job_id)


class Beat(threading.Thread):
    """Keeps the job's heartbeat fresh and interrupts the main thread when a cancel goes unheeded."""

    def __init__(self, store: Store, job_id: int, progress: Progress | None):
        super().__init__(daemon=True)
        self.store, self.job_id, self.progress = store, job_id, progress
        self.cancel_requested = False
        self.result: dict = {}
        self._halt = threading.Event()

    def run(self) -> None:
        seen_at = None
        while not self._halt.wait(HEARTBEAT_S):
            try:
                self.cancel_requested = jobs.heartbeat(self.store, self.job_id) or self.cancel_requested
            except Exception:  # a busy store must not kill the worker; the next beat retries
                continue
            if self.cancel_requested:
                seen_at = seen_at or time.monotonic()
                if time.monotonic() - seen_at > CANCEL_GRACE_S:
                    _thread.interrupt_main()
                    return

    def stop(self) -> None:
        self._halt.set()


def run_score(store: Store, job: Job, beat: Beat) -> None:
    """The scoring worker: copy cached rows, then score the missing ones chunk by chunk."""
    from scar_core.ranker import load_ranker
    from scar_core.score import iter_scores

    run = runs.get_run(store, job.params["run_id"])
    from_cache = runs.fill_from_cache(store, run.id)
    todo = runs.missing_examples(store, run.id)
    total = datasets.count_examples(store, run.dataset_id)
    done = total - len(todo)
    if store.transact(lambda s: jobs.report(s, job.id, done, total, None, "loading the ranker" if todo else None)):
        raise Cancelled
    beat.result = {"scored": 0, "from_cache": from_cache}
    if not todo and not runs.count_without_breakdown(store, run.id):
        return
    expected = rankers.get_ranker(store, run.ranker_id)
    ranker = load_ranker(run.params["model"], encoder=run.params.get("encoder"))
    if ranker.identity != expected.identity:
        raise ScarError(f"the checkpoint at {run.params['model']} changed since run {run.id} was created; "
                        "start a new run")
    examples = [datasets.to_core(row) for row in todo]
    started, scored = time.perf_counter(), 0
    for part in iter_scores(ranker, [e.ranker_instruction() for e in examples], [e.response for e in examples],
                            left_truncate=[bool(e.context) for e in examples], device=run.device,
                            precision=run.precision, batch_size=job.params.get("batch_size"),
                            chunk_rows=int(job.params["chunk_rows"])):
        features = form_features([examples[i].response for i in part.index.tolist()])
        if part.lm_nll is not None:  # the NLL a ranker's LM term scored with, and the term's share of the score
            for k, (value, share) in enumerate(zip(part.lm_nll.tolist(), part.lm_part.tolist())):
                features[k].update(lm_nll=None if value != value else value, lm_contribution=share)
        rows = [{"example_id": todo[i].id, "score": float(part.score[k]),
                 "truncated_instruction": bool(part.truncated_instruction[k]),
                 "truncated_response": bool(part.truncated_response[k]),
                 "v_lf": runs.pack(part.v_lf[k]), "v_is": runs.pack(part.v_is[k]), "diagnostics": features[k]}
                for k, i in enumerate(part.index.tolist())]
        scored += len(rows)
        rate = scored / max(time.perf_counter() - started, 1e-9)

        def commit(session, rows=rows, rate=rate) -> bool:
            runs.add_results(session, run.id, rows)
            return jobs.report(session, job.id, done + scored, total, rate, "scoring")

        cancel_requested = store.transact(commit)
        beat.result = {"scored": scored, "from_cache": from_cache}
        if beat.progress:
            beat.progress(done + scored, total, rate)
        if cancel_requested or beat.cancel_requested:
            raise Cancelled
    store.transact(lambda s: jobs.report(s, job.id, total, total, None, "score breakdown"))
    save_breakdown(store, run.id, ranker)


def form_features(responses: list[str]) -> list[dict]:
    """Per-response linguistic-form features as JSON-safe dicts (NaN becomes None)."""
    from scar_core.diagnostics.features import features_frame

    table = features_frame(responses)
    return [{k: (None if v != v else float(v)) for k, v in row.items()} for row in table.to_dict("records")]


def save_breakdown(store: Store, run_id: int, ranker) -> None:
    """Once every row of a run is in: split each score into form and surprisal contributions around the
    run's own means (scar_core.diagnostics.breakdown) and add the style-outlier distances."""
    from scar_core.diagnostics.breakdown import breakdown
    from scar_core.diagnostics.outliers import style_outliers

    data = runs.run_results(store, run_id)
    parts = breakdown(ranker, data["v_is"], data["v_lf"])
    lf_out, is_out = style_outliers(data["v_lf"], data["v_is"])
    runs.save_breakdown(store, run_id, data["example_id"], parts.lf_contribution, parts.is_contribution,
                        {"lf_outlier": lf_out, "is_outlier": is_out})
