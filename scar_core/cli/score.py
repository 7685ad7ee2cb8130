"""`score INPUT --out SCORES.jsonl`: one JSON line per scorable pair, in input order (or, with
`--out-format parquet`, the same records as Parquet shards in a folder)."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from scar_core.cli.common import (add_clean_options, add_engine_options, add_input_options, add_model_options,
                                  clean_examples, load_inputs, open_ranker, progress_bar, ray_cluster,
                                  score_with_progress)
from scar_core.diagnostics.table import example_table, ordered, records
from scar_core.errors import ScarError
from scar_core.export import write_atomic, write_parquet_shards
from scar_core.jobs.ray import RayCluster, split_engine
from scar_core.score import Scores


def add(sub) -> None:
    p = sub.add_parser("score", help="score every pair and write one JSON line per pair")
    add_input_options(p)
    add_model_options(p)
    p.add_argument("--out", required=True, help="output JSONL path (a folder with --out-format parquet)")
    p.add_argument("--out-format", default="jsonl", choices=["jsonl", "parquet"],
                   help="jsonl: one JSON line per pair; parquet: the same records as Parquet shards in the folder "
                        "OUT (part-00000.parquet, ... in input order), for very large outputs")
    add_engine_options(p)
    add_clean_options(p)
    p.add_argument("--db", default=os.environ.get("SCAR_DB_URL"),
                   help="store the scores in this database (URL or SQLite path; default $SCAR_DB_URL): "
                        "re-runs resume or reuse stored scores")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cluster = ray_cluster(args)  # refuse bad engine options before loading anything
    results, examples = load_inputs(args)
    if args.db:
        bar, update = progress_bar(len(examples), quiet=args.quiet)
        with bar:
            scores, diagnostics = stored_scores(args, results, update, cluster)
    else:
        ranker = open_ranker(args)
        scores = score_with_progress(args, ranker, examples, cluster)
        diagnostics = records(example_table(ranker, scores, [ex.response for ex in examples]))
    flags = clean_examples(args, examples, scores=scores.score).flags
    rows = ({"id": ex.id, "score": float(scores.score[i]), "source": ex.source, "where": ex.meta.get("where"),
             "truncated_instruction": bool(scores.truncated_instruction[i]),
             "truncated_response": bool(scores.truncated_response[i]),
             **ordered({k: v for k, v in diagnostics[i].items() if k != "score"}), "flags": flags[i]}
            for i, ex in enumerate(examples))
    if args.out_format == "parquet":
        write_parquet_shards(args.out, rows)
    else:
        write_atomic(args.out, (json.dumps(row) + "\n" for row in rows))
    return 0


def stored_scores(args: argparse.Namespace, results: list, update,
                  cluster: RayCluster | None) -> tuple[Scores, list[dict]]:
    """Score through the store as jobs (one run per input file), committed chunk by chunk, resumable and
    answered from stored scores where the content, weights and precision match; Scores and each row's
    stored diagnostics, in input order."""
    from db import jobs, open_store, runs
    from scar_core.jobs.datasets import import_loaded
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score

    store = open_store(args.db)
    params = {"fmt": args.input_format, "lenient": args.lenient, "field_map": None, "source": None}
    parts, diagnostics, base = [], [], 0
    for result in results:
        dataset = import_loaded(store, result, params)
        run = submit_score(store, dataset.id, model=args.model, encoder=args.encoder, device=args.device,
                           precision=args.precision, batch_size=args.batch_size,
                           engine=None if cluster is None else cluster.params(),
                           engine_kind=split_engine(args.engine)[1], launch=False)
        job = jobs.get_job(store, run.job_id)
        if job.status != "done":
            job = run_job(store, run.job_id,
                          progress=lambda done, _total, rate, base=base: update(base + done, 0, rate))
        if job.status != "done":
            raise ScarError(f"scoring job {job.id} ended {job.status}: {job.error or ''}".rstrip(": "))
        base += job.total
        update(base, 0, 0.0)
        parts.append(runs.run_results(store, run.id))
        diagnostics.extend(runs.run_diagnostics(store, run.id))
    fields = ("score", "v_lf", "v_is", "truncated_instruction", "truncated_response")
    return Scores(**{f: np.concatenate([p[f] for p in parts]) for f in fields}), diagnostics
