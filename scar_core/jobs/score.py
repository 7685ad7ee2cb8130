"""The scoring job: score a stored dataset with a ranker, committing results chunk by chunk.

Re-running a job scores only the rows still missing (a unique run_id + example_id constraint rules
out duplicates); rows already scored with the same ranker identity and precision are copied from
earlier runs without loading a model. Each result stores the per-example diagnostics of
scar_core.diagnostics.table: the figures of the pair itself with its chunk, then, once every row is in,
the score's parts and the outlier distances around the run's own means.
"""
from __future__ import annotations

import time

from db import datasets, jobs, rankers, runs
from db.models import Job, Run
from db.store import Store
from scar_core.device import precision_name, resolve
from scar_core.diagnostics.table import head_score, pair_figures, records, run_figures
from scar_core.errors import ScarError
from scar_core.jobs.datasets import clean_dataset
from scar_core.jobs.rankers import register_checkpoint
from scar_core.jobs.runner import Beat, Cancelled, start_worker
from scar_core.ranker import StyleRanker, load_ranker
from scar_core.score import default_chunk_rows, iter_scores


def submit_score(store: Store, dataset_id: int, model: str = "default", encoder: str | None = None,
                 device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                 chunk_rows: int | None = None, clean: dict | None = None, launch: bool = True) -> Run:
    """Create a scoring run for a dataset. With `clean` ({"dedup": ..., "lang": ...}) the dataset is
    cleaned first and the summary kept with the job (export manifests record it). Rows already scored
    with the same ranker (weights and LM term settings) and precision (matched by content id) are
    copied at once; when nothing is left the run is done without loading a model, otherwise a worker
    process is started (launch=False leaves the job queued for `run_job`)."""
    if datasets.get_dataset(store, dataset_id) is None:
        raise ScarError(f"no dataset {dataset_id} in the store")
    ranker = register_checkpoint(store, model, encoder)
    dev, dtype = resolve(device, precision)
    summary = clean_dataset(store, dataset_id, **clean) if clean is not None else None
    job = jobs.create_job(store, "score", {"model": str(model), "encoder": encoder, "batch_size": batch_size,
                                           "chunk_rows": chunk_rows or default_chunk_rows(dev.type),
                                           "clean": summary})
    run = runs.create_run(store, dataset_id, ranker.id, str(dev), precision_name(dtype),
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


def run_score(store: Store, job: Job, beat: Beat) -> None:
    """The scoring worker: copy cached rows, then score the missing ones chunk by chunk."""
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
        figures = records(pair_figures([examples[i].response for i in part.index.tolist()], part))
        rows = [{"example_id": todo[i].id, "score": float(part.score[k]),
                 "truncated_instruction": bool(part.truncated_instruction[k]),
                 "truncated_response": bool(part.truncated_response[k]),
                 "v_lf": runs.pack(part.v_lf[k]), "v_is": runs.pack(part.v_is[k]), "diagnostics": figures[k]}
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
    save_run_figures(store, run.id, ranker)


def save_run_figures(store: Store, run_id: int, ranker: StyleRanker) -> None:
    """Once every row of a run is in: add the figures measured against the whole run
    (scar_core.diagnostics.table.run_figures: the score's baseline and its form and surprisal parts,
    around the run's own means, and the style-outlier distances)."""
    data = runs.run_results(store, run_id)
    lm_part = None
    if ranker.lm_term is not None:
        lm_part = runs.run_figures(store, run_id, ["lm_contribution"])["lm_contribution"]
    figures = run_figures(ranker, data["v_is"], data["v_lf"], head_score(data["score"], lm_part))
    runs.save_diagnostics(store, run_id, data["example_id"], {name: figures[name].to_numpy() for name in figures})
