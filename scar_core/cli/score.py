"""`score INPUT --out SCORES.jsonl`: one JSON line per scorable pair, in input order."""
from __future__ import annotations

import argparse
import json

from scar_core.cli.common import (add_clean_options, add_input_options, add_model_options, clean_examples,
                                  load_inputs, open_ranker, progress_bar)
from scar_core.diagnostics.report import example_table
from scar_core.export import write_atomic
from scar_core.score import score_examples


def add(sub) -> None:
    p = sub.add_parser("score", help="score every pair and write one JSON line per pair")
    add_input_options(p)
    add_model_options(p)
    p.add_argument("--out", required=True, help="output JSONL path")
    add_clean_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
