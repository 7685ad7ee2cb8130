"""Style diagnostics of two pools side by side: is one more uniform in form and lower in surprisal?

    python bench/style_compare.py [--a LIMA.json] [--b GPT4.json] [--sample 100] [--no-surprisal]

Defaults compare LIMA's human answers with GPT-4's AlpacaEval answers from ../shared/data/pools.
Prints, per pool:
- form features: mean of each feature, and the pool's spread = the mean over features of the
  within-pool standard deviation, in units of the two pools' joint standard deviation;
- v_lf spread: each row's standardised distance (scar_core.diagnostics.outliers, scale fitted on
  both pools together) to its own pool's centre. v_lf comes from the default ranker when
  models/default holds one, else from the bundled MiniLM encoder (v_lf is a max-pool of the
  encoder's states and does not depend on the ranker's head); with the default ranker also v_is
  spread and the score;
- measured surprisal (SmolLM2-135M-Instruct) on a seeded random sample of each pool, with a
  Mann-Whitney U test.
Ends with one JSON line holding every figure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POOLS = ROOT.parent / "shared" / "data" / "pools"

from scar_core.diagnostics.features import FEATURES, features_frame  # noqa: E402
from scar_core.diagnostics.outliers import Centre  # noqa: E402
from scar_core.load import load  # noqa: E402
from scar_core.ranker import DEFAULT_DIR, load_ranker, new_ranker  # noqa: E402
from scar_core.score import score_examples  # noqa: E402


def spread(values: np.ndarray, labels: np.ndarray, centre_scale: np.ndarray) -> dict[str, dict]:
    """Per pool: distances of its rows to its own centre, on the joint scale."""
    out = {}
    for name in np.unique(labels):
        rows = values[labels == name]
        d = Centre(rows.mean(axis=0), centre_scale).distance(rows)
        out[str(name)] = {"mean": float(d.mean()), "median": float(np.median(d)), "std": float(d.std())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default=str(POOLS / "lima_1k.alpaca.json"))
    parser.add_argument("--b", default=str(POOLS / "alpacaeval_805_gpt4.json"))
    parser.add_argument("--sample", type=int, default=100, help="rows per pool for the surprisal measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-surprisal", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pools = {Path(p).name.split(".")[0]: load(p).examples for p in (args.a, args.b)}
    labels = np.concatenate([[name] * len(ex) for name, ex in pools.items()])
    examples = [e for ex in pools.values() for e in ex]
    figures: dict = {"pools": {name: len(ex) for name, ex in pools.items()}}
    print("pools:", figures["pools"])

    start = time.perf_counter()
    feats = features_frame([e.response for e in examples])
    print(f"features: {len(examples)} rows in {time.perf_counter() - start:.1f} s")
    z = (feats - feats.mean()) / feats.std(ddof=0).replace(0, np.nan)
    by_pool = {name: feats[labels == name] for name in pools}
    figures["feature_means"] = {name: f.mean().round(4).to_dict() for name, f in by_pool.items()}
    figures["feature_spread"] = {name: float(z[labels == name].std(ddof=0).mean()) for name in pools}
    table = pd.DataFrame({name: f.mean() for name, f in by_pool.items()}).loc[list(FEATURES)]
    table["std_" + "/".join(pools)] = [
        "/".join(f"{by_pool[n][c].std(ddof=0):.3g}" for n in pools) for c in FEATURES]
    print(table.round(3).to_string())
    print("form-feature spread (mean within-pool std in joint-std units):",
          {k: round(v, 3) for k, v in figures["feature_spread"].items()})

    has_default = (DEFAULT_DIR / "config.json").is_file()
    ranker = load_ranker("default") if has_default else new_ranker("minilm")
    figures["vectors_from"] = "models/default" if has_default else "bundled MiniLM encoder (v_lf only)"
    start = time.perf_counter()
    scores = score_examples(ranker, examples, precision="auto")
    print(f"encoded {len(examples)} pairs in {time.perf_counter() - start:.1f} s ({figures['vectors_from']})")
    spaces = {"v_lf": scores.v_lf} | ({"v_is": scores.v_is} if has_default else {})
    for space, v in spaces.items():
        figures[f"{space}_spread"] = spread(v, labels, Centre.of(v).scale)
        print(f"{space} distance to own pool centre (joint scale):",
              {k: {m: round(x, 3) for m, x in d.items()} for k, d in figures[f"{space}_spread"].items()})
    if has_default:
        figures["score"] = {name: {"mean": float(scores.score[labels == name].mean()),
                                   "median": float(np.median(scores.score[labels == name]))} for name in pools}
        print("score:", figures["score"])

    if not args.no_surprisal:
        from scipy.stats import mannwhitneyu

        from scar_core.lm import load_language_model, measure_surprisal, sample_rows

        lm = load_language_model()
        nll = {}
        for name, ex in pools.items():
            rows = sample_rows(len(ex), args.sample, args.seed)
            start = time.perf_counter()
            measured = measure_surprisal([ex[i] for i in rows], lm)
            nll[name] = measured.nll[np.isfinite(measured.nll)]
            figures.setdefault("surprisal", {})[name] = {
                "rows": len(rows), "mean_nll": float(nll[name].mean()), "median_nll": float(np.median(nll[name])),
                "median_perplexity": float(np.exp(np.median(nll[name]))),
                "std_nll": float(nll[name].std()), "truncated": int(measured.truncated.sum()),
                "seconds": round(time.perf_counter() - start, 1)}
        a, b = nll.values()
        figures["surprisal_mannwhitney_p"] = float(mannwhitneyu(a, b).pvalue)
        print(f"measured surprisal ({lm.name}, {lm.dtype}, seeded sample of {args.sample} per pool):")
        for name, s in figures["surprisal"].items():
            print(f"  {name}: {s}")
        print(f"  Mann-Whitney U p = {figures['surprisal_mannwhitney_p']:.3g}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
