"""Scoring speed of a ranker (default: the bundled one) on a real pool, split into its parts.

    python bench/model_speed.py [--model default|DIR] [--limit N] [--precision auto fp32 ...]

Scores the same seeded sample as bench/throughput.py (ShareGPT + Dolly from ../shared/data/pools)
per precision and prints pairs/s for the whole ranker and, for a ranker with an LM term, for its
language model alone (the rest is the encoder and head). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scar_core.ranker import load_ranker  # noqa: E402
from scar_core.device import resolve_device, resolve_precision
from scar_core.score import score_pairs  # noqa: E402
from throughput import add_pool_options, sample_pool  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    add_pool_options(ap)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", nargs="+", default=["auto", "fp32"])
    args = ap.parse_args()
    if not all(p.is_file() for p in args.pool):
        sys.exit("the pools are missing (this benchmark needs ../shared/data)")
    instructions, responses = sample_pool(args.pool, args.limit, args.seed)
    ranker = load_ranker(args.model)
    device = resolve_device(args.device)
    out = {"model": args.model, "pairs": len(responses), "device": str(device), "results": {}}
    for precision in args.precision:
        dtype = resolve_precision(precision, device)
        score_pairs(ranker, instructions[:8], responses[:8], device=str(device), precision=precision)  # warm-up, loads
        start = time.perf_counter()
        score_pairs(ranker, instructions, responses, device=str(device), precision=precision)
        total = time.perf_counter() - start
        figures = {"dtype": str(dtype).removeprefix("torch."), "ranker_pairs_per_s": round(len(responses) / total, 2)}
        if ranker.lm_term is not None:
            start = time.perf_counter()
            ranker.lm_nll(instructions, responses, device, dtype)
            lm = time.perf_counter() - start
            figures["lm_pairs_per_s"] = round(len(responses) / lm, 2)
            figures["lm_share_of_time"] = round(lm / total, 3)
        out["results"][precision] = figures
        print(f"{precision} ({figures['dtype']}): {figures}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
