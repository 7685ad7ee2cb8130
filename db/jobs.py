"""Job rows: state, progress and the worker that owns them. Any job kind (score, map, train)
uses these; scar_core/jobs/runner.py starts and runs the workers.

Statuses: queued -> running -> done | failed | cancelled; a running job whose worker died
(stale heartbeat or dead pid) becomes `interrupted` and can be resumed.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Job, Run, utcnow
from db.store import Store
from scar_core.errors import ScarError

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = ("done", "failed", "cancelled")
STALE_AFTER_S = 30.0  # workers beat every couple of seconds


def create_job(store: Store, kind: str, params: dict | None = None) -> Job:
    def work(session: Session) -> Job:
        job = Job(kind=kind, params=params or {}, status="queued")
        session.add(job)
        session.flush()
        return job
    return store.transact(work)


def get_job(store: Store, job_id: int) -> Job | None:
    with store.read() as s:
        return s.get(Job, job_id)


def list_jobs(store: Store, kind: str | None = None, limit: int = 50) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if kind:
        query = query.where(Job.kind == kind)
    with store.read() as s:
        return list(s.scalars(query))


def set_params(store: Store, job_id: int, **params) -> None:
    """Merge keys into a job's params (e.g. the id of the run it works on)."""
    def work(session: Session) -> None:
        job = session.get(Job, job_id)
        job.params = {**job.params, **params}
    store.transact(work)


def claim(store: Store, job_id: int) -> Job:
    """Mark the job running in this process; refuses a job that is finished or owned by a live worker."""
    def work(session: Session) -> Job:
        job = _existing(session, job_id)
        if job.status in ("done", "cancelled"):
            raise ScarError(f"job {job_id} is already {job.status}")
        if job.status == "running" and job.pid != os.getpid() and not is_stale(job):
            raise ScarError(f"job {job_id} is already running in process {job.pid} on {job.host}")
        now = utcnow()
        job.status, job.pid, job.host, job.heartbeat_at = "running", os.getpid(), socket.gethostname(), now
        job.error, job.finished_at = None, None
        job.started_at = job.started_at or now
        _sync_runs(session, job_id, "running", started=now)
        return job
    return store.transact(work)


def report(session: Session, job_id: int, done: int, total: int, rate: float | None,
           message: str | None = None, eta_s: float | None = None) -> bool:
    """Write progress and a heartbeat inside the caller's transaction; True when a cancel was requested.
    The time left is `eta_s` when the caller knows better than rows left / rate (rows differ in length)."""
    eta = eta_s if eta_s is not None else (total - done) / rate if rate else None
    values = {"done": done, "total": total, "rate": rate, "eta_s": eta, "heartbeat_at": utcnow()}
    if message is not None:
        values["message"] = message
    session.execute(update(Job).where(Job.id == job_id).values(**values))
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def heartbeat(store: Store, job_id: int) -> bool:
    """Touch the heartbeat; True when a cancel was requested."""
    def work(session: Session) -> bool:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return store.transact(work)


def finish(store: Store, job_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
    """Record how the job ended (done, failed, cancelled or interrupted) on it and on its runs."""
    if status not in STATUSES:
        raise ValueError(status)

    def work(session: Session) -> None:
        job = session.get(Job, job_id)
        job.status, job.error, job.eta_s = status, error, None
        job.finished_at = utcnow()
        if result is not None:
            job.result = result
        _sync_runs(session, job_id, status, finished=job.finished_at)
    store.transact(work)


def request_cancel(store: Store, job_id: int) -> Job:
    """Ask the worker to stop (it polls the flag); a job with no live worker is cancelled at once."""
    def work(session: Session) -> Job:
        job = _existing(session, job_id)
        if job.status in FINISHED:
            return job
        job.cancel_requested = True
        if job.status != "running" or is_stale(job):
            job.status, job.finished_at = "cancelled", utcnow()
            _sync_runs(session, job_id, "cancelled", finished=job.finished_at)
        return job
    return store.transact(work)


def reset_for_resume(store: Store, job_id: int) -> Job:
    """Queue an interrupted, failed or cancelled job again (its committed work is kept)."""
    def work(session: Session) -> Job:
        job = _existing(session, job_id)
        if job.status == "done":
            return job
        if job.status == "running" and not is_stale(job):
            raise ScarError(f"job {job_id} is still running in process {job.pid}")
        job.status, job.cancel_requested, job.error, job.finished_at = "queued", False, None, None
        job.pid = None  # the dead worker's; a new launch records its own
        _sync_runs(session, job_id, "queued")
        return job
    return store.transact(work)


def record_launch(store: Store, job_id: int, pid: int) -> None:
    """Note the worker process started for a queued job, so a worker that exits before claiming the
    job (bad environment, killed at start) shows as interrupted instead of queued forever."""
    def work(session: Session) -> None:
        session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                        .values(pid=pid, host=socket.gethostname()))
    store.transact(work)


def mark_stale(store: Store) -> list[int]:
    """Mark jobs whose worker died as interrupted (see is_stale); returns their ids."""
    with store.read() as s:
        stale = [job.id for job in s.scalars(select(Job).where(Job.status.in_(("running", "queued"))))
                 if is_stale(job)]
    for job_id in stale:
        finish(store, job_id, "interrupted", error="the worker stopped without finishing (killed or crashed)")
    return stale


def is_stale(job: Job, max_age_s: float = STALE_AFTER_S) -> bool:
    """A running job whose heartbeat is old, or whose worker process on this host is gone; or a
    queued job whose launched worker (record_launch) on this host exited before claiming it."""
    if job.status == "queued":
        return job.pid is not None and job.host == socket.gethostname() and not process_alive(job.pid)
    if job.status != "running":
        return False
    if job.heartbeat_at is None or _age(job.heartbeat_at) > timedelta(seconds=max_age_s):
        return True
    return job.host == socket.gethostname() and job.pid is not None and not process_alive(job.pid)


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (killed but not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _age(moment: datetime) -> timedelta:
    if moment.tzinfo is None:  # SQLite returns naive datetimes; all stored times are UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - moment


def _sync_runs(session: Session, job_id: int, status: str, started: datetime | None = None,
               finished: datetime | None = None) -> None:
    values: dict = {"status": status}
    if started is not None:
        values["started_at"] = started
    if finished is not None:
        values["finished_at"] = finished
    session.execute(update(Run).where(Run.job_id == job_id).values(**values))


def _existing(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise ScarError(f"no job {job_id} in the store")
    return job
