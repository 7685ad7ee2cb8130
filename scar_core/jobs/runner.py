"""The job runner: a job is a row in the store plus a worker process, so the UI never blocks and a
crash loses at most the chunk in flight.

Each kind of job has its own module beside this one (score, map, train) with a `submit_*` that
creates the row and a `run_*` that the worker calls. Workers commit results chunk by chunk together
with their progress. A heartbeat thread keeps `heartbeat_at` fresh and watches the cancel flag;
when the main loop does not stop at the next chunk boundary it is interrupted.
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

from db import jobs
from db.models import Job
from db.store import Store
from scar_core.errors import ScarError
from scar_core.jobs import access

# Every job kind and its worker body "module:function(store, job, beat)"; imported only when a job runs.
KINDS: dict[str, str] = {
    "score": "scar_core.jobs.score:run_score",
    "map": "scar_core.jobs.map:run_map",
    "train": "scar_core.jobs.train:run_train",
    "signal": "scar_core.jobs.signals:run_signal",
    "validate": "scar_core.jobs.validation:run_validation",
}
HEARTBEAT_S = 2.0
CANCEL_GRACE_S = 5.0
ROOT = Path(__file__).resolve().parents[2]
Progress = Callable[[int, int, float], None]


class Cancelled(Exception):
    """The job's cancel flag was seen by the worker."""


def start_worker(store: Store, job_id: int) -> int:
    """Start `python -m scar_core worker JOB_ID --db URL` in its own session; returns its pid. A thread
    waits for it, so a finished worker is reaped at once instead of staying a zombie of the server."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "scar_core", "worker", str(job_id), "--db", store.url],
                               cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    threading.Thread(target=process.wait, name=f"reap-worker-{process.pid}", daemon=True).start()
    jobs.record_launch(store, job_id, process.pid)
    return process.pid


@access.action("run", what="cancelled job {job_id}")
def cancel(store: Store, job_id: int) -> Job:
    """Request a cancel; the worker stops within seconds and keeps the rows it committed."""
    return jobs.request_cancel(store, job_id)


@access.action("run", what="resumed job {job_id}")
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
