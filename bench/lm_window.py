"""Cheaper LM terms on a trained ranker without retraining: accuracy of each variant of its term.

    python bench/lm_window.py [--model default] [--variants 256 128 96 64 128:int8 nolm] [--pool-sample 300]
                              [--extra-cap 20] [--train-sample 400]

The encoder and head run once (their score without the LM term); then, per variant of the term
(`N`: the LM's token limit per pair, the prompt at most half; `:int8`: the LM's linear layers
dynamically quantised to int8; `nolm`: no LM term; `lmonly`: the LM term alone), the LM measures
every response and the score is the head's plus `-w * (nll - mean) / std` with the checkpoint's
weight w and mean/std re-estimated on a seeded sample of --train-sample responses of the
checkpoint's training data (../shared/data/ranker), so that a shifted NLL distribution is
standardised again (the checkpoint's own mean/std are printed next to them).

Reports, per variant: the three unpaired pools of bench/heldout.py (same seeded samples, AUC) and
pairwise accuracy, longer-wins baseline and length-balanced accuracy on ../shared/data/ranker_extra
(--extra-cap instructions per family, seeded; none of it was in the default's training data), and
the LM's time per response. The last line is one JSON object.
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

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from families import EVAL_ONLY, FAMILIES, family_rows, pool_rows  # noqa: E402
from heldout import DATA, POOL_PAIRS, RANKER_FILES  # noqa: E402
from scar_core.device import resolve  # noqa: E402
from scar_core.evaluate import pairwise_report  # noqa: E402
from scar_core.lm import response_nll  # noqa: E402
from scar_core.ranker import load_ranker  # noqa: E402
from scar_core.score import score_pairs  # noqa: E402
from scar_core.training_data import ROLES, read_training_rows  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--variants", nargs="+", default=["256", "128", "96", "64", "nolm"])
    ap.add_argument("--pool-sample", type=int, default=300)
    ap.add_argument("--pool-seed", type=int, default=42)
    ap.add_argument("--extra-cap", type=int, default=20, help="instructions per ranker_extra family (0: none)")
    ap.add_argument("--train-sample", type=int, default=400, help="training responses for mean/std")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    ranker = load_ranker(args.model)
    term = ranker.lm_term
    if term is None:
        sys.exit(f"{args.model} has no LM term")
    dev, dtype = resolve(args.device, "auto")
    weight = float(ranker.lm_weight)

    # What gets scored: pools, ranker_extra families (held out from the default), training sample.
    pools = pool_rows(args.data, POOL_PAIRS, args.pool_sample, args.pool_seed)
    extra = {}
    if args.extra_cap:
        fam = family_rows(args.data, args.extra_cap, args.seed)
        extra = {f: fam[f] for f in [*FAMILIES, *EVAL_ONLY] if f not in ("hc3", "self-instruct")}
    train_rows = read_training_rows([args.data / "ranker" / f for f in RANKER_FILES])
    train_pairs = list(dict.fromkeys((r.instruction, t) for r in train_rows for t in r.responses.values()))
    pick = np.sort(np.random.default_rng(args.seed).permutation(len(train_pairs))[:args.train_sample])
    train_pairs = [train_pairs[i] for i in pick]

    instructions, responses = [], []
    for ins, res in pools.values():
        instructions += ins
        responses += res
    for rows in extra.values():
        for row in rows:
            for role in ROLES:
                if role in row.responses:
                    instructions.append(row.instruction)
                    responses.append(row.responses[role])
    n_eval = len(responses)
    print(f"{n_eval} responses to score ({sum(len(r) for _, r in pools.values())} pool rows), "
          f"{len(train_pairs)} training responses for the standardisation", file=sys.stderr)

    start = time.perf_counter()
    ranker.lm_term = None
    head = score_pairs(ranker, instructions, responses, device=str(dev), precision="auto").score.astype(np.float64)
    ranker.lm_term = term
    head_s = time.perf_counter() - start
    print(f"encoder + head: {head_s:.0f} s for {n_eval} pairs", file=sys.stderr, flush=True)

    results = {}
    for variant in args.variants:
        entry: dict = {}
        if variant == "nolm":
            scores = head
        else:
            window, _, opt = variant.partition(":")
            lmonly = window == "lmonly"
            tokens = term.max_tokens if lmonly else int(window)
            lm = ranker.language_model(dev, dtype)
            if opt == "int8":
                from throughput import quantized_lm
                lm = quantized_lm(ranker, dev)
            settings = dict(max_tokens=tokens, copy_span=term.copy_span, min_tokens=term.min_tokens,
                            count_end=term.count_end)
            t0 = time.perf_counter()
            nll = response_nll(lm, instructions, responses, **settings)
            lm_s = time.perf_counter() - t0
            seen = response_nll(lm, [p[0] for p in train_pairs], [p[1] for p in train_pairs], **settings)
            seen = seen[~np.isnan(seen)]
            mean, std = float(seen.mean()), float(seen.std())
            z = np.nan_to_num((nll - mean) / std)
            scores = -z if lmonly else head - weight * z
            entry.update(lm_s_per_response=round(lm_s / n_eval, 4), mean=round(mean, 4), std=round(std, 4))
        entry["pools"] = pool_aucs(pools, scores)
        extra_scores = scores[sum(len(r) for _, r in pools.values()):]
        pos, per_family = 0, {}
        for family, rows in extra.items():
            out = {role: np.full(len(rows), np.nan) for role in ROLES}
            for i, row in enumerate(rows):
                for role in ROLES:
                    if role in row.responses:
                        out[role][i] = extra_scores[pos]
                        pos += 1
            report = pairwise_report(rows, out)
            per_family[family] = {"pairs": report["n_pairs"], "accuracy": report["pairwise_accuracy"],
                                  "longer_wins": report["length_baseline"]["pairwise_accuracy"],
                                  "length_balanced": report["length_controlled"]["balanced_accuracy"]}
        entry["families"] = per_family
        results[variant] = entry
        print(f"{variant}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    print_table(results, term)
    print(json.dumps({"model": args.model, "checkpoint_mean_std": [term.mean, term.std], "weight": weight,
                      "pool_sample": args.pool_sample, "extra_cap": args.extra_cap, "head_s": round(head_s, 1),
                      "n_eval": n_eval, "results": results}))


def pool_aucs(pools: dict, scores: np.ndarray) -> dict:
    offsets, pos = {}, 0
    for name, (_, res) in pools.items():
        offsets[name] = scores[pos:pos + len(res)]
        pos += len(res)
    out = {}
    for human, llm in POOL_PAIRS:
        a, b = offsets[human], offsets[llm]
        out[f"{human} vs {llm}"] = round(float(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])), 4)
    return out


def print_table(results: dict, term) -> None:
    first = next(iter(results.values()))
    families = list(first["families"])
    print(f"LM term variants of the checkpoint (its window {term.max_tokens}); pools: AUC, families: pairwise "
          "accuracy / length-balanced")
    columns = [p.split(" vs ")[0].split("_")[0] + " vs " + p.split(" vs ")[1].split(".")[0] for p in first["pools"]]
    print("| " + " | ".join(["variant", "LM s/response", *columns, *families]) + " |")
    print("|---" * (2 + len(first["pools"]) + len(families)) + "|")
    for name, entry in results.items():
        cells = [name, str(entry.get("lm_s_per_response", "-"))]
        cells += [f"{v:.3f}" for v in entry["pools"].values()]
        cells += [f"{f['accuracy']:.3f} / " + ("-" if f["length_balanced"] is None else f"{f['length_balanced']:.3f}")
                  for f in entry["families"].values()]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
