"""`compare RUN_A RUN_B`: how two scoring runs of one dataset agree, as JSON (the Compare page's figures)."""
from __future__ import annotations

import argparse
import json


def add(sub) -> None:
    p = sub.add_parser("compare", help="compare two scoring runs of one dataset: rank correlation, top-k%% "
                                       "overlap, the rows they disagree on most (JSON)")
    p.add_argument("run_a", type=int, metavar="RUN_A", help="id of a scoring run in the store")
    p.add_argument("run_b", type=int, metavar="RUN_B", help="id of another run over the same dataset")
    p.add_argument("--top", type=int, default=20, help="how many most-disagreeing rows to list (default 20)")
    p.add_argument("--db", help="database URL or SQLite path (default: $SCAR_DB_URL, else ./scar_studio.db)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from db import open_store
    from scar_core.errors import ScarError
    from scar_core.jobs.compare import report

    if args.top < 0:
        raise ScarError(f"--top must be 0 or more, got {args.top}")
    print(json.dumps(report(open_store(args.db, existing=True), args.run_a, args.run_b, args.top), indent=2))
    return 0
