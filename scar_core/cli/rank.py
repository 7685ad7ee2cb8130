"""`rank INPUT --out SELECTED.jsonl --ratio R`: score, rank, cut and export the subset, best first."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from scar_core.cli.common import (add_clean_options, add_input_options, add_model_options, clean_examples,
                                  load_inputs, open_ranker, score_with_progress)
from scar_core.export import export, file_sha256
from scar_core.device import resolve_device, resolve_precision
from scar_core.select import cut


def add(sub) -> None:
    p = sub.add_parser("rank", help="score, rank, cut and export the best pairs")
    add_input_options(p)
    add_model_options(p)
    p.add_argument("--out", required=True, help="output JSONL path (a .manifest.json is written beside it)")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--ratio", type=float, help="keep this fraction of the pool, e.g. 0.1")
    rule.add_argument("--topk", type=int, help="keep this many pairs")
    rule.add_argument("--threshold", type=float, help="keep pairs scoring at least this")
    p.add_argument("--format", default="alpaca", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="shape of the exported rows")
    p.add_argument("--with-scores", action="store_true", help="add a 'score' field to each exported row")
    add_clean_options(p)
    p.add_argument("--keep-flagged", action="store_true",
                   help="rank flagged rows too (by default they are dropped before the cut; duplicates keep "
                        "their best-scored member)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    results, examples = load_inputs(args)
    report = clean_examples(args, examples)
    todo = report.rows("all" if args.keep_flagged else "candidates")  # off-language rows are never scored
    ranker = open_ranker(args)
    scores = score_with_progress(args, ranker, [examples[i] for i in todo])
    score = np.full(len(examples), np.nan)
    score[todo] = scores.score
    report = report.ranked(score)
    pool = todo if args.keep_flagged else report.rows("kept")
    chosen = cut(score[pool], ratio=args.ratio, topk=args.topk, threshold=args.threshold)
    rows = pool[chosen.kept]
    kept = [examples[i] for i in rows]
    device = resolve_device(args.device)
    manifest = {
        "inputs": [{"path": r.path, "sha256": file_sha256(r.path), "format": r.format, "rows": r.rows,
                    "pairs": len(r.examples), "rejected": len(r.rejected)} for r in results],
        "ranker": {"model": str(args.model), "encoder": ranker.encoder_name, "weights_sha256": ranker.weights_hash,
                   "identity": ranker.identity},
        "device": str(device), "precision": str(resolve_precision(args.precision, device)).replace("torch.", ""),
        "cut": chosen.params(), "pool_size": len(pool),
        "cleaning": {**report.summary(), "flagged_rows": "kept" if args.keep_flagged else "dropped"},
    }
    out, side = export(args.out, kept, args.format, score[rows] if args.with_scores
                       else None, manifest)
    print(f"kept {len(kept)} of {len(pool)} pairs (lowest kept score {chosen.threshold}); "
          f"wrote {out} and {side}", file=sys.stderr)
    return 0
