"""The map job: project a run's v_lf and v_is vectors to 2-D (scar_core.map) in a worker process and
store both layouts, so the Explore page reuses them on every later visit.

Maps are made without being asked for: the scoring worker maps its run as soon as it is done
(`map_finished_run`, in the same process), and Explore starts a map job for a finished run that has
none (a run answered from the store, or one scored before this). Only a run with every row scored
is mapped; `unmappable` says why another cannot be.

Its worker is the generic `python -m scar_core worker JOB_ID` (kind "map" in scar_core.jobs.KINDS).
"""
from __future__ import annotations

from db import datasets, jobs, maps, runs
from db.models import Job, Run
from db.store import Store
from scar_core.jobs import access, runner as background
from scar_core.errors import ScarError


def submit_map(store: Store, run_id: int, seed: int = 0, launch: bool = True, started_by: str | None = None) -> Job:
    """Queue a map job for a finished run and start its worker (launch=False leaves it queued); it records
    `started_by`, else the person acting (access.acting)."""
    run = runs.get_run(store, run_id)
    if run is None:
        raise ScarError(f"no scoring run {run_id} in the store")
    if run.status != "done":
        raise ScarError(f"run {run_id} is {run.status}; maps need a finished run")
    job = jobs.create_job(store, "map", {"run_id": run_id, "seed": seed,
                                         "started_by": started_by or access.acting(store)})
    if launch:
        background.start_worker(store, job.id)
    return job


def latest_map_job(store: Store, run_id: int) -> Job | None:
    """The newest map job of a run, if any."""
    return next((j for j in jobs.list_jobs(store, "map", limit=200) if j.params.get("run_id") == run_id), None)


def unmappable(store: Store, run: Run) -> str | None:
    """Why this run's maps cannot be computed (yet), in words for the page; None when they can."""
    if run.status == "done":
        return None
    done, total = runs.count_done(store, run.id), datasets.count_examples(store, run.dataset_id)
    if run.status in ("queued", "running"):
        return ("Maps are computed automatically when this run finishes "
                f"({done} of {total} rows scored so far).")
    return (f"Maps need every row of the run scored, and this run was {run.status} with {done} of {total} "
            "rows scored. Resume it on the Rank page (or start a new run): its maps are computed "
            "automatically when it finishes.")


def ensure_map(store: Store, run_id: int, launch: bool = True) -> Job | None:
    """The run's map job, started now when a finished run has none (None while the run cannot be mapped,
    see unmappable). A map job that failed or was cancelled is left as it is: the page offers a retry."""
    job = latest_map_job(store, run_id)
    if job is not None:
        return job
    run = runs.get_run(store, run_id)
    if run is None or unmappable(store, run) is not None:
        return None
    return submit_map(store, run_id, launch=launch, started_by=f"automatically, when run {run_id} finished")


def map_finished_run(store: Store, score_job: Job) -> Job | None:
    """In the scoring worker, once its job is done: map the run in this process (the worker's libraries
    are loaded already, and the maps are ready before anyone opens Explore); None when there is nothing
    to map."""
    if score_job.kind != "score" or score_job.status != "done" or "run_id" not in score_job.params:
        return None
    job = ensure_map(store, int(score_job.params["run_id"]), launch=False)
    if job is None or job.status != "queued":
        return job
    return background.run_job(store, job.id)


def run_map(store: Store, job: Job, beat: background.Beat) -> None:
    """Worker body: read both vector sets, project them with the run's seed, store the layouts."""
    from scar_core.map import MIN_UMAP_ROWS, style_map

    run_id, seed = int(job.params["run_id"]), int(job.params.get("seed", 0))
    store.transact(lambda s: jobs.report(s, job.id, 0, 3, None, "reading vectors"))
    ids_lf, v_lf = runs.run_vectors(store, run_id, "lf")
    ids_is, v_is = runs.run_vectors(store, run_id, "is")
    if len(ids_lf) == 0 or not (ids_lf == ids_is).all():
        raise ScarError(f"run {run_id} has no stored vectors to map")
    method = "UMAP" if len(ids_lf) >= MIN_UMAP_ROWS else "PCA"
    if store.transact(lambda s: jobs.report(s, job.id, 1, 3, None, f"projecting {len(ids_lf)} rows with {method}")):
        raise background.Cancelled
    layout = style_map(v_lf, v_is, seed=seed)
    maps.save_map(store, run_id, "lf", ids_lf, layout.lf)
    maps.save_map(store, run_id, "is", ids_is, layout.is_)
    store.transact(lambda s: jobs.report(s, job.id, 3, 3, None, f"stored ({layout.method})"))
    beat.result = {"rows": int(len(ids_lf)), "method": layout.method}
