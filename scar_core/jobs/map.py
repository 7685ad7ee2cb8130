"""The map job: project a run's v_lf and v_is vectors to 2-D (scar_core.map) in a worker process and
store both layouts, so the Explore page reuses them on every later visit.

Its worker is the generic `python -m scar_core worker JOB_ID` (kind "map" in scar_core.jobs.KINDS).
"""
from __future__ import annotations

from db import jobs, maps, runs
from db.models import Job
from db.store import Store
from scar_core.jobs import runner as background
from scar_core.errors import ScarError


def submit_map(store: Store, run_id: int, seed: int = 0, launch: bool = True) -> Job:
    """Queue a map job for a finished run and start its worker (launch=False leaves it queued)."""
    run = runs.get_run(store, run_id)
    if run is None:
        raise ScarError(f"no scoring run {run_id} in the store")
    if run.status != "done":
        raise ScarError(f"run {run_id} is {run.status}; maps need a finished run")
    job = jobs.create_job(store, "map", {"run_id": run_id, "seed": seed})
    if launch:
        background.start_worker(store, job.id)
    return job


def latest_map_job(store: Store, run_id: int) -> Job | None:
    """The newest map job of a run, if any."""
    return next((j for j in jobs.list_jobs(store, "map", limit=200) if j.params.get("run_id") == run_id), None)


def run_map(store: Store, job: Job, beat: background.Beat) -> None:
    """Worker body: read both vector sets, project them with the run's seed, store the layouts."""
    from scar_core.map import style_map

    run_id, seed = int(job.params["run_id"]), int(job.params.get("seed", 0))
    store.transact(lambda s: jobs.report(s, job.id, 0, 3, None, "reading vectors"))
    ids_lf, v_lf = runs.run_vectors(store, run_id, "lf")
    ids_is, v_is = runs.run_vectors(store, run_id, "is")
    if len(ids_lf) == 0 or not (ids_lf == ids_is).all():
        raise ScarError(f"run {run_id} has no stored vectors to map")
    if store.transact(lambda s: jobs.report(s, job.id, 1, 3, None, f"projecting {len(ids_lf)} rows")):
        raise background.Cancelled
    layout = style_map(v_lf, v_is, seed=seed)
    maps.save_map(store, run_id, "lf", ids_lf, layout.lf)
    maps.save_map(store, run_id, "is", ids_is, layout.is_)
    store.transact(lambda s: jobs.report(s, job.id, 3, 3, None, f"stored ({layout.method})"))
    beat.result = {"rows": int(len(ids_lf)), "method": layout.method}
