"""The scoring job: score a stored dataset with a ranker, committing results chunk by chunk.

Re-running a job scores only the rows still missing (a unique run_id + example_id constraint rules
out duplicates); rows already scored with the same ranker identity and precision are copied from
earlier runs without loading a model. Each result stores the per-example diagnostics of
scar_core.diagnostics.table: the figures of the pair itself with its chunk, then, once every row is in,
the score's parts and the outlier distances around the run's own means.
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import replace

from db import browse, datasets, jobs, rankers, runs
from db.models import Job, Run
from db.store import Store
from scar_core import hub
from scar_core.device import precision_name, resolve
from scar_core.diagnostics.table import head_score, pair_figures, records, run_figures
from scar_core.errors import ScarError
from scar_core.jobs import access
from scar_core.jobs.datasets import clean_dataset
from scar_core.jobs.rankers import register_checkpoint
from scar_core.engine import Engine, checkpoint_runs_lm, resolve_engine
from scar_core.jobs.ray import RayCluster, open_engine, ray_device_precision
from scar_core.jobs.runner import Beat, Cancelled, start_worker
from scar_core.ranker import StyleRanker, load_ranker
from scar_core.score import Scores, default_chunk_rows

FIRST_CHUNK_ROWS = 8  # rows of the first chunk a worker commits
SAMPLE_SEED = 0
WORK_CHARS = 2048  # about 512 tokens: a text's share of scoring time stops growing where models truncate it


def submit_score(store: Store, dataset_id: int, model: str = "default", **options) -> Run:
    """start_score's run (the options are start_score's)."""
    return start_score(store, dataset_id, model, **options)[0]


def checkpoint_here(store: Store, model: str, hub_id: bool = False) -> str:
    """The checkpoint a person chose to score with, as start_score reads it: "default" as it is, a Hub id
    fetched into the Hub cache (`hub_id`), or a folder on the server; in team mode a folder only inside
    the data folders, the app's trained rankers or the Hub cache (access.readable), checked before
    anything of it is read."""
    if hub_id:
        return str(hub.fetch(model))
    if model == "default":
        return model
    return str(access.readable(store, model, also=(browse.rankers_folder(store), hub.cache_folder()), kind="folder"))


def engine_here(model: str | None, device: str = "auto") -> str | None:
    """The engine the app's runs take on this machine: what "auto" resolves to for this ranker and device
    (scar_core.engine.resolve_engine: int8 on a CPU with VNNI and no native bf16, else torch); None
    when the device is not here."""
    try:
        return resolve_engine("auto", checkpoint_runs_lm(model) if model else False, device)
    except ScarError:
        return None


@access.action("run", dataset="dataset_id", what="started scoring data set #{dataset_id} with ranker {model}")
def start_score(store: Store, dataset_id: int, model: str = "default", encoder: str | None = None,
                device: str = "auto", precision: str = "auto", batch_size: int | None = None,
                chunk_rows: int | None = None, clean: dict | None = None, engine: dict | None = None,
                launch: bool = True, sample: int | None = None, engine_kind: str = "auto") -> tuple[Run, bool]:
    """(run, joined): create a scoring run for a dataset. With `clean` ({"dedup": ..., "lang": ...}) the worker cleans
    the dataset first and keeps the summary with the job (export manifests record it); the caller never
    waits for it. `sample` scores a seeded random sample of that many rows instead, from scratch (no
    copies from earlier runs), which measures this machine's rate (scar_core.jobs.estimate). Rows already scored
    with the same ranker (weights and LM term settings) and precision (matched by content id) are
    copied at once; when nothing is left the run is done without loading a model, otherwise a worker
    process is started (launch=False leaves the job queued for `run_job`). `engine` (RayCluster.params())
    scores on a Ray cluster instead of in the worker process (scar_core.jobs.ray). `engine_kind` is the
    in-process engine that scores, in the worker or in Ray's actors (scar_core.engine: "torch", "int8" or
    "auto"); the run records it resolved, and only runs of one engine share scores. A start while a run
    of the same dataset, ranker, device, precision and sample is queued or running joins that run
    (a double click starts one run, not two): `joined` is then True and `run` the earlier run."""
    if datasets.get_dataset(store, dataset_id) is None:
        raise ScarError(f"no dataset {dataset_id} in the store")
    model = checkpoint_here(store, str(model))
    ranker = register_checkpoint(store, model, encoder)
    if engine is None:
        dev, dtype = resolve(device, precision)
        device_name, precision, device_type = str(dev), precision_name(dtype), dev.type
        kind = resolve_engine(engine_kind, checkpoint_runs_lm(model), device)
        if kind == "int8" and device_type != "cpu":
            raise ScarError(f"the int8 engine runs on the CPU, not {device_name}; use the torch engine on a GPU")
    else:  # the Ray actors' block size sets their chunks
        kind = "torch" if engine_kind == "auto" else resolve_engine(engine_kind, False)
        (device_name, precision), device_type = ray_device_precision("cpu" if kind == "int8" else device,
                                                                     precision), "cpu"
    run_params = {"model": str(model), "encoder": encoder, "batch_size": batch_size, "sample": sample,
                  "started_by": access.acting(store), **({"engine": engine} if engine else {})}
    job_params = {**run_params, "chunk_rows": chunk_rows or default_chunk_rows(device_type), "clean": None,
                  "clean_options": clean}
    run, joined = runs.start_or_join(store, dataset_id, ranker.id, device_name, precision, run_params, job_params,
                                     engine=kind)
    if joined:
        return run, True
    job = jobs.get_job(store, run.job_id)
    if not sample:
        runs.fill_from_cache(store, run.id)
    total = datasets.count_examples(store, dataset_id)
    done = runs.count_done(store, run.id)
    if done == total and clean is None and not sample:
        store.transact(lambda s: jobs.report(s, job.id, done, total, None, "answered from the store"))
        jobs.finish(store, job.id, "done", result={"scored": 0, "from_cache": done})
    else:  # the page's progress and history show the run's size while the worker starts
        size = min(sample, total) if sample else total
        store.transact(lambda s: jobs.report(s, job.id, 0 if sample else done, size, None, "starting the worker"))
        if launch:
            start_worker(store, job.id)
    return runs.get_run(store, run.id), False


def run_score(store: Store, job: Job, beat: Beat) -> None:
    """The scoring worker, phase by phase as its progress message says: clean the dataset (when asked
    and not done before a resume), copy cached rows, load the ranker, then score the missing rows chunk
    by chunk; a small first chunk commits within seconds, so a resume never starts from nothing."""
    run = runs.get_run(store, job.params["run_id"])
    total = job.params.get("sample") or datasets.count_examples(store, run.dataset_id)
    if job.params.get("clean_options") is not None and job.params.get("clean") is None:
        if store.transact(lambda s: jobs.report(s, job.id, 0, total, None, "cleaning")):
            raise Cancelled
        started = time.perf_counter()
        cleaned = clean_dataset(store, run.dataset_id, **job.params["clean_options"])
        jobs.set_params(store, job.id, clean=cleaned, clean_seconds=round(time.perf_counter() - started, 3),
                        clean_rows=datasets.count_examples(store, run.dataset_id))  # estimates model it apart
    store.transact(lambda s: jobs.report(s, job.id, 0, total, None, "reading the rows"))
    from_cache = 0 if job.params.get("sample") else runs.fill_from_cache(store, run.id)
    todo, total = work_left(store, job.id, run.id)
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
    cluster = job.params.get("engine")
    scorer = open_engine(ranker, run.params["model"], run.engine, encoder=run.params.get("encoder"),
                         cluster=RayCluster.from_params(cluster) if cluster else None,
                         device=run.device.removeprefix("ray:"), precision=run.precision,
                         batch_size=job.params.get("batch_size"), chunk_rows=int(job.params["chunk_rows"]))
    if todo:
        scorer.prepare()  # loaded now, not inside the first chunk
    examples = [datasets.to_core(row) for row in todo]
    scored, measured = 0, {}
    # the first chunk's rate is a first estimate (it pays the start-up costs); later rates count from its end
    warm = (time.perf_counter(), 0, 0)
    sizes = [work_size(e.ranker_instruction()) + work_size(e.response) for e in examples]
    chars_done, chars_left = 0, sum(sizes)
    store.transact(lambda s: jobs.report(s, job.id, done, total, None, "scoring"))
    texts = ([e.ranker_instruction() for e in examples], [e.response for e in examples])
    left = [bool(e.context) for e in examples]
    if todo and cluster:
        store.transact(lambda s: jobs.report(s, job.id, done, total, None, "starting the Ray actors"))
    parts = (scorer.iter_scores(*texts, left_truncate=left) if cluster else
             iter_first_early(scorer, *texts, left_truncate=left, first_rows=FIRST_CHUNK_ROWS))
    for part in parts:
        figures = records(pair_figures([examples[i].response for i in part.index.tolist()], part))
        rows = [{"example_id": todo[i].id, "score": float(part.score[k]),
                 "truncated_instruction": bool(part.truncated_instruction[k]),
                 "truncated_response": bool(part.truncated_response[k]),
                 "v_lf": runs.pack(part.v_lf[k]), "v_is": runs.pack(part.v_is[k]), "diagnostics": figures[k]}
                for k, i in enumerate(part.index.tolist())]
        scored += len(rows)
        chars_done += sum(sizes[i] for i in part.index.tolist())
        elapsed = max(time.perf_counter() - warm[0], 1e-9)
        speed = (chars_done - warm[2]) / elapsed
        rate, eta = (scored - warm[1]) / elapsed, (chars_left - chars_done) / max(speed, 1e-9)
        measured = {"rows_per_s": round(rate, 4), "chars_per_s": round(speed, 2)}
        if warm[1] == 0:
            warm = (time.perf_counter(), scored, chars_done)

        def commit(session, rows=rows, rate=rate, eta=eta) -> bool:
            runs.add_results(session, run.id, rows)
            return jobs.report(session, job.id, done + scored, total, rate, "scoring", eta_s=eta)

        cancel_requested = store.transact(commit)
        beat.result = {"scored": scored, "from_cache": from_cache, **measured}
        if beat.progress:
            beat.progress(done + scored, total, rate)
        if cancel_requested or beat.cancel_requested:
            raise Cancelled
    store.transact(lambda s: jobs.report(s, job.id, total, total, None, "score breakdown"))
    save_run_figures(store, run.id, ranker)


def work_size(text: str) -> int:
    """A text's share of scoring time, in characters up to WORK_CHARS (rates and estimates use it)."""
    return min(len(text), WORK_CHARS)


def work_left(store: Store, job_id: int, run_id: int) -> tuple[list, int]:
    """The examples a run still lacks, and how many rows it covers in all: the whole dataset, or for a
    sample run the seeded random sample drawn on its first start (kept in the job's params, so a
    resume scores the same rows)."""
    run, job = runs.get_run(store, run_id), jobs.get_job(store, job_id)
    todo = runs.missing_examples(store, run_id)
    size = job.params.get("sample")
    if not size:
        return todo, datasets.count_examples(store, run.dataset_id)
    chosen = job.params.get("sample_ids")
    if chosen is None:
        chosen = sorted(e.id for e in random.Random(SAMPLE_SEED).sample(todo, min(int(size), len(todo))))
        jobs.set_params(store, job_id, sample_ids=chosen)
    wanted = set(chosen)
    return [e for e in todo if e.id in wanted], len(chosen)


def run_sample(store: Store, run: Run) -> int | None:
    """The rows a sample run was asked to score, None for a whole-dataset run (runs since issue 26 keep
    it in their params; older ones only in their job's)."""
    if "sample" in run.params:
        return run.params["sample"]
    job = jobs.get_job(store, run.job_id) if run.job_id else None
    return job.params.get("sample") if job else None


def run_scope(store: Store, run: Run) -> dict:
    """Whether a run scored its whole dataset or a sample: {"sample": bool, "rows": scored, "of": the
    dataset's rows, "seed": the sample's seed}, as export manifests record it."""
    total, sample = datasets.count_examples(store, run.dataset_id), run_sample(store, run)
    if not sample:
        return {"sample": False, "rows": total, "of": total}
    return {"sample": True, "rows": min(int(sample), total), "of": total, "seed": SAMPLE_SEED}


def scope_note(store: Store, run: Run) -> str | None:
    """'sample of 20 of 450 rows' for a sample run; None for a whole dataset (no query for a run that
    records its scope)."""
    if not run_sample(store, run):
        return None
    scope = run_scope(store, run)
    return f"sample of {scope['rows']:,} of {scope['of']:,} rows"


def iter_first_early(engine: Engine, instructions: list[str], responses: list[str], *, left_truncate: list[bool],
                     first_rows: int) -> Iterator[Scores]:
    """engine.iter_scores, with the first `first_rows` rows (file order) as a chunk of their own before the
    rest: iter_scores goes longest first, so on a big pool its first chunk of long rows took minutes."""
    head = min(first_rows, len(responses))
    for lo, hi in ((0, head), (head, len(responses))):
        for part in engine.iter_scores(instructions[lo:hi], responses[lo:hi], left_truncate=left_truncate[lo:hi]):
            yield replace(part, index=part.index + lo)


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
