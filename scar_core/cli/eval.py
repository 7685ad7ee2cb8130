"""`eval --model default|DIR DATA.jsonl [...]`: pairwise accuracy; the last stdout line is one JSON object."""
from __future__ import annotations

import argparse
import json
import sys

from scar_core.cli.common import (add_engine_options, add_model_options, command_engine, open_ranker, progress_bar,
                                  ray_cluster)
from scar_core.cli.train import add_source_filters
from scar_core.evaluate import pairwise_report, score_rows
from scar_core.training_data import read_training_rows


def add(sub) -> None:
    p = sub.add_parser("eval", help="pairwise accuracy of a ranker on human / referenced / direct rows")
    p.add_argument("data", nargs="+", metavar="DATA", help="JSONL rows in the training format")
    add_model_options(p)
    add_engine_options(p)
    add_source_filters(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cluster = ray_cluster(args)  # refuse bad engine options before loading anything
    rows = read_training_rows(args.data, args.source, args.exclude_source)
    ranker = open_ranker(args)
    bar, update = progress_bar(sum(len(r.responses) for r in rows), desc="scoring", quiet=args.quiet)
    with bar:
        scores = score_rows(ranker, rows, engine=command_engine(args, ranker, cluster), progress=update)
    report = {"model": str(args.model), "data": args.data, **pairwise_report(rows, scores)}
    print(f"pairwise accuracy {report['pairwise_accuracy']} over {report['n_pairs']} pairs "
          f"(longer-wins baseline {report['length_baseline']['pairwise_accuracy']})", file=sys.stderr)
    print(json.dumps(report))
    return 0
