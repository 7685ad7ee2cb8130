"""Where a store stands: the five steps of the flow with their counts (the landing page) and every run and
job with its state (the Runs page). Read-only; one place, so the app and any later command agree."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from db import datasets, jobs, rankers, runs, selections
from db.labels import count_events
from db.models import Job
from db.store import Store
from scar_core.display import plural
from scar_core.jobs.score import run_sample

NOBODY = "not recorded"  # runs and jobs started before identities were kept say so, never guess


@dataclass(frozen=True)
class Step:
    """One step of the flow: its page, what it does, and where this store stands on it."""

    name: str
    page: str          # file under pages/
    does: str
    stands: str


def steps(store: Store) -> list[Step]:
    """Datasets -> Rank -> Explore -> Select -> Export, each with this store's counts."""
    items = datasets.list_datasets(store)
    every_run = runs.list_runs(store)
    finished = [r for r in every_run if r.status == "done"]
    going = [r for r in every_run if r.status in ("queued", "running")]
    chosen = sum(len(selections.list_selections(store, r.id)) for r in every_run)
    exported = len(selections.list_exports(store))
    pairs = sum(d.example_count for d in items)
    return [
        Step("Datasets", "datasets.py", "import a JSON, JSONL, CSV or Parquet file of instruction-response pairs",
             f"{plural(len(items), 'data set')} ({plural(pairs, 'pair')})" if items else "no data set yet"),
        Step("Rank", "rank.py", "score every pair with a SCAR ranker, in the background",
             f"{plural(len(every_run), 'run')}, {len(finished)} finished" + (f", {len(going)} going" if going else "")
             if every_run else "nothing scored yet"),
        Step("Explore", "explore.py", "see why pairs scored as they did, on maps and one by one; label them",
             f"{plural(len(finished), 'finished run')} to explore, {plural(count_events(store), 'label')} given"
             if finished else "waits for a finished run"),
        Step("Select", "select.py", "choose the cut: a ratio, a top k or a score threshold, with quotas and labels",
             plural(chosen, "saved selection") if chosen else "no selection saved yet"),
        Step("Export", "export.py", "write the chosen pairs as JSONL with a manifest saying how they were chosen",
             plural(exported, "export") if exported else "nothing exported yet"),
    ]


def history(store: Store) -> list[dict]:
    """Every scoring run (with its job) and every other job (maps, training), newest first: what it is,
    its state, data set, ranker, precision, engine, sample or full, its times and who started it."""
    names = {d.id: d.name for d in datasets.list_datasets(store)}
    ranker_names = {r.id: r.name for r in rankers.list_rankers(store)}
    all_jobs = {j.id: j for j in jobs.list_jobs(store, limit=None)}
    rows, tied = [], set()
    for run in runs.list_runs(store):
        job = all_jobs.get(run.job_id) if run.job_id else None
        tied.add(run.job_id)
        sample = run_sample(store, run)
        engine = (run.params or {}).get("engine")
        rows.append(_row(f"run {run.id}", "score", run.status, job, run.created_at, run.started_at, run.finished_at,
                         data_set=names.get(run.dataset_id, f"#{run.dataset_id} (deleted)"),
                         ranker=ranker_names.get(run.ranker_id, "?"), device=run.device, precision=run.precision,
                         engine=f"{run.engine} on {'a Ray cluster' if engine else 'this machine'}",
                         scope=f"sample of {int(sample):,}" if sample else "whole data set",
                         started_by=(run.params or {}).get("started_by")))
    by_run = {r.id: r for r in runs.list_runs(store)}
    for job in all_jobs.values():
        if job.id in tied:
            continue
        run = by_run.get(job.params.get("run_id")) if job.kind == "map" else None
        rows.append(_row(f"job {job.id}", job.kind, job.status, job, job.created_at, job.started_at,
                         job.finished_at,
                         data_set=names.get(run.dataset_id, "") if run else names.get(job.params.get("dataset_id"), ""),
                         ranker=f"map of run {run.id}" if run else "", device="", precision="", engine="",
                         scope="", started_by=job.params.get("started_by")))
    return sorted(rows, key=lambda r: r["created"] or _EPOCH, reverse=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _row(what: str, kind: str, state: str, job: Job | None, created, started, finished, *, started_by: str | None,
         **described) -> dict:
    created, started, finished = (_utc(t) for t in (created, started, finished))
    took = (finished - started).total_seconds() if started and finished else None
    progress = f"{job.done:,}/{job.total:,}" if job and job.total else ""
    return {"what": what, "kind": kind, "state": state, **described, "progress": progress, "created": created,
            "started": started, "finished": finished, "seconds": None if took is None else round(took, 1),
            "started by": started_by or NOBODY,
            "error": (job.error or "").split("\n")[0][:200] if job else ""}


def _utc(moment: datetime | None) -> datetime | None:
    """Stored times are UTC; SQLite hands them back without a zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def active_scoring(store: Store) -> list[tuple]:
    """(run, job) of every queued or running scoring job, newest first (the sidebar's status)."""
    pairs = [(r, jobs.get_job(store, r.job_id)) for r in runs.list_runs(store) if r.job_id and r.status in
             ("queued", "running")]
    return [(r, j) for r, j in pairs if j is not None and j.status in ("queued", "running")]
