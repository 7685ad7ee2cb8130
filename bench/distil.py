"""How closely a ranker's predicted (distilled) LM term follows the LM it was trained on.

    python bench/distil.py --model DIR [--pool-sample 300] [--pool-seed 42]

For a checkpoint trained with `train --predict-lm`, on the seeded pool samples of bench/heldout.py
(LIMA, Dolly: human-written; AlpacaEval GPT-4 Turbo and Llama-2, Alpaca: LLM-written): the
ranker's predicted NLL of each response against the NLL its LM term's language model measures
with the same settings (Pearson and Spearman correlation per pool, over the responses the LM
measures), and per pool pair the AUC of "the LLM-pool answer ranks higher" for the measured NLL
alone (the LM zero-shot, lower NLL ranks higher), the predicted NLL alone, and the ranker's score.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.stats import pearsonr, spearmanr  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from families import pool_rows  # noqa: E402
from heldout import DATA, POOL_PAIRS  # noqa: E402
from scar_core.device import resolve_device  # noqa: E402
from scar_core.lm import load_language_model, response_nll  # noqa: E402
from scar_core.ranker import load_ranker  # noqa: E402
from scar_core.score import score_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint with a predicted LM term")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--pool-sample", type=int, default=300)
    ap.add_argument("--pool-seed", type=int, default=42)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    ranker = load_ranker(args.model)
    term = ranker.lm_term
    if term is None or not term.predicted:
        sys.exit(f"{args.model} has no predicted LM term (train --predict-lm)")
    lm = load_language_model(term.lm, str(resolve_device(args.device)), "auto")
    pools = pool_rows(args.data, POOL_PAIRS, args.pool_sample, args.pool_seed)
    figures: dict[str, dict[str, np.ndarray]] = {}
    print("| pool | responses | measured | Pearson | Spearman |")
    print("|---|---|---|---|---|")
    for name, (instructions, responses) in pools.items():
        scores = score_pairs(ranker, instructions, responses, device=args.device, precision="auto")
        measured = response_nll(lm, instructions, responses, term.max_tokens, term.copy_span, term.min_tokens,
                                term.count_end)
        figures[name] = {"score": scores.score, "predicted": scores.lm_nll, "measured": measured}
        have = ~np.isnan(measured)
        pearson = pearsonr(scores.lm_nll[have], measured[have])[0]
        spearman = spearmanr(scores.lm_nll[have], measured[have])[0]
        figures[name]["correlation"] = {"pearson": round(float(pearson), 4), "spearman": round(float(spearman), 4),
                                        "measured": int(have.sum())}
        print(f"| {name} | {len(responses)} | {int(have.sum())} | {pearson:.3f} | {spearman:.3f} |")
    print()
    print("| human pool | LLM pool | measured NLL (the LM alone) | predicted NLL | ranker score |")
    print("|---|---|---|---|---|")
    aucs = {}
    for human, llm in POOL_PAIRS:
        h, g = figures[human], figures[llm]
        labels = np.r_[np.zeros(len(h["score"])), np.ones(len(g["score"]))]

        def auc(values: np.ndarray) -> float:  # a response the LM cannot measure counts as average
            return float(roc_auc_score(labels, np.nan_to_num(values, nan=float(np.nanmean(values)))))

        row = {"measured_nll": auc(-np.r_[h["measured"], g["measured"]]),
               "predicted_nll": auc(-np.r_[h["predicted"], g["predicted"]]),
               "score": auc(np.r_[h["score"], g["score"]])}
        aucs[f"{human} vs {llm}"] = {k: round(v, 4) for k, v in row.items()}
        print(f"| {human} | {llm} | {row['measured_nll']:.3f} | {row['predicted_nll']:.3f} | {row['score']:.3f} |")
    print(json.dumps({"model": args.model, "correlation": {n: f["correlation"] for n, f in figures.items()},
                      "auc": aucs}))


if __name__ == "__main__":
    main()
