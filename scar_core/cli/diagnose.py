"""`diagnose INPUT --out REPORT.json`: style diagnostics of a data set as one JSON report."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from scar_core.cli.common import (add_engine_options, add_input_options, add_model_options, load_inputs, open_ranker,
                                  progress_bar, ray_cluster, score_with_progress)
from scar_core.diagnostics.report import build_report
from scar_core.diagnostics.table import example_table
from scar_core.lm import DEFAULT_LM, measure_surprisal
from scar_core.errors import ScarError
from scar_core.export import write_atomic
from scar_core.select import cut


def add(sub) -> None:
    p = sub.add_parser("diagnose", help="score a data set and write a JSON report of its style diagnostics")
    add_input_options(p)
    add_model_options(p)
    add_engine_options(p)
    p.add_argument("--out", required=True, help="output JSON path")
    p.add_argument("--ratio", type=float, default=0.25,
                   help="compare the best RATIO of the pool with the rest (default 0.25)")
    p.add_argument("--surprisal", action="store_true",
                   help="also measure each response's perplexity under a small language model (slow on CPU)")
    p.add_argument("--lm", default=DEFAULT_LM,
                   help="language model for --surprisal: 'smollm2' (bundled) or a Hugging Face causal LM id/folder")
    p.add_argument("--sample", type=int, help="measure surprisal on a random sample of this many pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the surprisal sample")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.ratio <= 1:
        raise ScarError(f"--ratio must be in (0, 1], got {args.ratio}")
    if args.sample is not None and not args.surprisal:
        raise ScarError("--sample applies to the surprisal measurement; add --surprisal")
    cluster = ray_cluster(args)  # refuse bad engine options before loading anything
    results, examples = load_inputs(args)
    if not examples:
        raise ScarError("no scorable pairs in the input")
    ranker = open_ranker(args)
    scores = score_with_progress(args, ranker, examples, cluster)
    table = example_table(ranker, scores, [ex.response for ex in examples])
    extra = {"inputs": [{"path": r.path, "format": r.format, "pairs": len(r.examples)} for r in results],
             "ranker": {"model": str(args.model), "encoder": ranker.encoder_name,
                        "weights_sha256": ranker.weights_hash, "identity": ranker.identity}}
    if args.surprisal:
        bar, update = progress_bar(min(args.sample or len(examples), len(examples)), desc="surprisal", quiet=args.quiet)
        with bar:
            measured = measure_surprisal(examples, args.lm, sample=args.sample, seed=args.seed, progress=update,
                                         device=args.device, precision=args.precision)
        for col in ("nll", "perplexity"):
            values = np.full(len(examples), np.nan)
            values[measured.index] = getattr(measured, col)
            table[col] = values
        extra["surprisal"] = {"model": measured.model, "measured": len(measured.index), "sample_seed": args.seed,
                              "truncated": int(measured.truncated.sum())}
    report = build_report(table, cut(table["score"].to_numpy(), ratio=args.ratio), extra=extra)
    write_atomic(args.out, [json.dumps(report, indent=2)])
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    if report.get("breakdown", {}).get("note"):
        print(f"note: {report['breakdown']['note']}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
