"""`score INPUT --out SCORES.jsonl`: one JSON line per scorable pair, in input order."""
from __future__ import annotations

import argparse
import json
import os

from scar_core.cli.common import (add_clean_options, add_input_options, add_model_options, clean_examples,
                                  load_inputs, open_ranker, progress_bar)
from scar_core.diagnostics.report import example_table
from scar_core.errors import ScarError
from scar_core.export import write_atomic
from scar_core.score import score_examples


def add(sub) -> None:
    p = sub.add_parser("score", help="score every pair and write one JSON line per pair")
    add_input_options(p)
    add_model_options(p)
    p.add_argument("--out", required=True, help="output JSONL path")
    add_clean_options(p)
    p.add_argument("--db", default=os.environ.get("SCAR_DB_URL"),
                   help="store the scores in this database (URL or SQLite path; default $SCAR_DB_URL): "
                        "re-runs resume or reuse stored scores")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.db:
        return run_stored(args)
    _, examples = load_inputs(args)
    ranker = open_ranker(args)
    bar, update = progress_bar(len(examples))
    with bar:
        scores = score_examples(ranker, examples, device=args.device, precision=args.precision,
                                batch_size=args.batch_size, progress=update)
    table = example_table(ranker, scores, [ex.response for ex in examples])
    flags = clean_examples(args, examples, scores=scores.score).flags
    diagnostics = table.drop(columns="score").to_dict("records")
    lines = (json.dumps({"id": ex.id, "score": float(scores.score[i]), "source": ex.source,
                         "where": ex.meta.get("where"),
                         "truncated_instruction": bool(scores.truncated_instruction[i]),
                         "truncated_response": bool(scores.truncated_response[i]),
                         **diagnostics[i], "flags": flags[i]}) + "\n"
             for i, ex in enumerate(examples))
    write_atomic(args.out, lines)
    return 0


def run_stored(args: argparse.Namespace) -> int:
    """Score through the store as a job: committed chunk by chunk, resumable, answered from cache."""
    from db import datasets, jobs, open_store, runs
    from scar_core.jobs import run_job, submit_score

    store = open_store(args.db)
    results, examples = load_inputs(args)
    params = {"fmt": args.input_format, "lenient": args.lenient, "field_map": None, "source": None}
    run_ids = []
    bar, update = progress_bar(len(examples))
    with bar:
        for result in results:
            dataset = datasets.import_result(store, result, params)
            run = submit_score(store, dataset.id, model=args.model, encoder=args.encoder, device=args.device,
                               precision=args.precision, batch_size=args.batch_size, launch=False)
            base = bar.n
            job = jobs.get_job(store, run.job_id)
            if job.status != "done":
                job = run_job(store, run.job_id, progress=lambda done, total, rate: update(base + done, 0, rate))
            if job.status != "done":
                raise ScarError(f"scoring job {job.id} ended {job.status}: {job.error or ''}".rstrip(": "))
            update(base + job.total, 0, 0.0)
            run_ids.append(run.id)

    def stored_rows():
        for run_id in run_ids:
            for offset in range(0, runs.count_done(store, run_id), 5000):
                yield from runs.results_page(store, run_id, sort="position", offset=offset, limit=5000)

    flags = iter(clean_examples(args, examples, scores=[row["score"] for row in stored_rows()]).flags)
    lines = (json.dumps({"id": row["content_id"], "score": row["score"], "source": row["source"],
                         "where": (row["meta"] or {}).get("where"),
                         "truncated_instruction": bool(row["truncated_instruction"]),
                         "truncated_response": bool(row["truncated_response"]), "flags": next(flags)}) + "\n"
             for row in stored_rows())
    write_atomic(args.out, lines)
    return 0
