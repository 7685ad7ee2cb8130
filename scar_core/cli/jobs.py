"""`jobs [list|cancel ID|resume ID]`: see and steer background jobs in the store."""
from __future__ import annotations

import argparse


def add(sub) -> None:
    p = sub.add_parser("jobs", help="list, cancel or resume background jobs")
    p.add_argument("action", nargs="?", default="list", choices=["list", "cancel", "resume"])
    p.add_argument("job_id", nargs="?", type=int)
    p.add_argument("--db", help="database URL or SQLite path (default: $SCAR_DB_URL, else ./scar_studio.db)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from db import jobs, open_store
    from scar_core.jobs import runner as workers
    from scar_core.errors import ScarError

    store = open_store(args.db, existing=True)
    if args.action != "list":
        if args.job_id is None:
            raise ScarError(f"jobs {args.action} needs a job id")
        job = (workers.cancel if args.action == "cancel" else workers.resume)(store, args.job_id)
        print(f"job {job.id}: {job.status}")
        return 0
    jobs.mark_stale(store)
    for job in jobs.list_jobs(store):
        eta = f", eta {job.eta_s:.0f}s" if job.eta_s and job.status == "running" else ""
        print(f"{job.id:>5}  {job.kind:<9} {job.status:<11} {job.done}/{job.total}{eta}"
              + (f"  {job.error.splitlines()[0]}" if job.error else ""))
    return 0
