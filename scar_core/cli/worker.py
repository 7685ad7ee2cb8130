"""`worker JOB_ID --db URL`: run one background job (started by the app or `score --db`)."""
from __future__ import annotations

import argparse


def add(sub) -> None:
    p = sub.add_parser("worker", help="run one background job from the store (started by the app)")
    p.add_argument("job_id", type=int)
    p.add_argument("--db", help="database URL or SQLite path (default: $SCAR_DB_URL, else ./scar_studio.db)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from db import open_store
    from scar_core.jobs.map import map_finished_run
    from scar_core.jobs.runner import run_job

    store = open_store(args.db)
    job = run_job(store, args.job_id)
    map_finished_run(store, job)  # a finished scoring run is mapped at once, in this process
    return 0 if job.status in ("done", "cancelled") else 1
