"""Held-out accuracy of the default ranker's training recipe: train without some sources, score them.

    python bench/heldout.py [--hold-out PATTERN ...] [--fine-tune-epochs N] [--no-length-debias] [--save DIR]
    python bench/heldout.py --model default       # no training: only the pool comparisons below
    python bench/heldout.py --families [--cap N] [--lm-surprisal]   # leave-one-family-out, head only

Trains one ranker, with the recipe of models/default (README there), on ../shared/data/ranker/
minus the held-out sources, then reports on the held-out rows: pairwise accuracy, the "longer
answer wins" baseline, and the length-balanced accuracy (mean of the accuracy where the LLM answer
is longer and where it is not; the length baseline scores 0.5 on it). Held-out self-instruct rows
are also paired with two more LLMs' answers to the same instructions (AlpacaEval outputs of GPT-4
Turbo and Llama-2-70B-chat, ../shared/data/pools/alpacaeval_805_*.json): human vs three LLMs.

Recipe: stage 1 trains the head on the frozen encoder's cached outputs; stage 2 (--fine-tune-epochs
> 0) fine-tunes encoder and head from there; both add length-debiasing rows (--no-length-debias
turns that off); --lm-surprisal adds the LM term (scar_core.ranker.LMTerm), --predict-lm distils it
into the ranker. Scoring runs in the
precision `auto` picks (bf16 on CPUs with native bf16).

Then, for sources no ranker here was trained on, unpaired pool comparisons where length says little:
human-written pools (LIMA, Dolly) against LLM-written ones (AlpacaEval GPT-4 Turbo and Llama-2-70B,
Alpaca's text-davinci-003), a seeded sample of --pool-sample rows each. Reported as AUC: the chance
that a random LLM-pool answer outscores a random human-pool answer, next to the same AUC for answer
length. The last line is one JSON object with the figures.

--families runs the leave-one-family-out sweep over ../shared/data/ranker and ranker_extra
(bench/families.py: frozen encoder, head only, cached encoder outputs and NLLs, --cap
instructions per family).
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

from scar_core.evaluate import evaluate  # noqa: E402
from scar_core.load import load  # noqa: E402
from scar_core.ranker import load_ranker  # noqa: E402
from scar_core.train import TrainConfig, start_ranker, train  # noqa: E402
from scar_core.training_data import TrainRow, read_training_rows, source_matches  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
RANKER_FILES = ["hc3_1000.jsonl", "realign_nq_100.jsonl", "selfinstruct_252.jsonl"]
OTHER_LLMS = ["alpacaeval_805_gpt4.json", "alpacaeval_805_llama2.json"]
# (human-written pool, LLM-written pool): similar kinds of tasks, answer lengths close to each other.
POOL_PAIRS = [("lima_1k.alpaca.json", "alpacaeval_805_gpt4.json"),
              ("lima_1k.alpaca.json", "alpacaeval_805_llama2.json"),
              ("dolly_2k.alpaca.json", "alpaca_2k.alpaca.json")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--hold-out", action="append", metavar="PATTERN",
                    help="source glob kept out of training and evaluated (repeatable; default: "
                         "'hc3/wiki_csai' and 'self-instruct/*')")
    ap.add_argument("--head-epochs", type=int, default=10)
    ap.add_argument("--head-lr", type=float, default=3e-4)
    ap.add_argument("--fine-tune-epochs", type=int, default=2, help="0: head only (frozen encoder)")
    ap.add_argument("--fine-tune-lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=128, help="token limit of texts while fine-tuning")
    ap.add_argument("--no-length-debias", action="store_true")
    ap.add_argument("--lm-surprisal", action="store_true",
                    help="train with the LM term (the bundled SmolLM2's NLL of each response, see LMTerm)")
    ap.add_argument("--predict-lm", action="store_true",
                    help="with --lm-surprisal: distil the LM term into the ranker (train --predict-lm)")
    ap.add_argument("--nll-cache", help="JSONL of measured NLLs shared by both stages (train --nll-cache)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", type=Path, help="also save the trained ranker here")
    ap.add_argument("--model", help="evaluate this ranker (default or a folder) on the pools instead of training")
    ap.add_argument("--pool-sample", type=int, default=300, help="rows per pool (0: no pool comparisons)")
    ap.add_argument("--engine", default="torch", choices=["torch", "int8"], help="with --model: the scoring engine")
    ap.add_argument("--precision", default="auto", help="with --model: the scoring precision")
    ap.add_argument("--pool-seed", type=int, default=42,
                    help="seed of the pool sample, apart from --seed so that runs of several training seeds "
                         "are compared on the same rows")
    ap.add_argument("--families", action="store_true",
                    help="leave-one-family-out over ranker/ and ranker_extra/ (head only; see bench/families.py)")
    ap.add_argument("--cap", type=int, default=100, help="--families: instructions sampled per family (0: all)")
    ap.add_argument("--compare-lm", action="store_true",
                    help="--families: run the sweep without and with the LM term (shared cached features)")
    ap.add_argument("--lm-max-tokens", type=int, help="with --lm-surprisal or --families: the LM term's token limit "
                                                      "(default: LMTerm's)")
    ap.add_argument("--only", nargs="+", metavar="FAMILY", help="--families: hold out only these families")
    args = ap.parse_args()
    if not (args.data / "ranker").is_dir():
        sys.exit(f"{args.data / 'ranker'}: not found (this benchmark needs ../shared/data)")
    if args.families:
        from families import run

        return run(args, POOL_PAIRS)
    if args.model:
        pools = compare_pools(load_ranker(args.model), args.data, args.pool_sample, args.pool_seed, args.device,
                              args.engine, args.precision)
        print(json.dumps({"model": args.model, "engine": args.engine, "precision": args.precision, "pools": pools}))
        return
    held = args.hold_out or ["hc3/wiki_csai", "self-instruct/*"]

    rows = read_training_rows([args.data / "ranker" / name for name in RANKER_FILES])
    train_rows = [r for r in rows if not source_matches(r.source, held)]
    test_rows = [r for r in rows + other_llm_rows(args.data, rows) if source_matches(r.source, held)]
    print(f"training on {len(train_rows)} rows; evaluating {len(test_rows)} held-out rows ({', '.join(held)})",
          file=sys.stderr)

    start = time.perf_counter()
    debias = not args.no_length_debias
    ranker = start_ranker(None, "minilm", seed=args.seed, lm="smollm2" if args.lm_surprisal else None,
                          lm_max_tokens=args.lm_max_tokens if args.lm_surprisal else None,
                          predict_lm=args.predict_lm)
    head = train(ranker, train_rows, TrainConfig(epochs=args.head_epochs, lr=args.head_lr, freeze_encoder=True,
                                                 seed=args.seed, device=args.device, length_debias=debias,
                                                 nll_cache=args.nll_cache))
    print(f"head: validation {head.best_val_accuracy} (epoch {head.best_epoch})", file=sys.stderr)
    stages = {"head": head.summary()}
    if args.fine_tune_epochs:
        ranker.encoder.requires_grad_(True)
        tuned = train(ranker, train_rows, TrainConfig(epochs=args.fine_tune_epochs, lr=args.fine_tune_lr,
                                                      seed=args.seed, device=args.device, length_debias=debias,
                                                      max_length=args.max_length, train_precision="bf16",
                                                      nll_cache=args.nll_cache))
        print(f"fine-tune: validation {tuned.best_val_accuracy} (epoch {tuned.best_epoch})", file=sys.stderr)
        stages["fine_tune"] = tuned.summary()
    train_s = time.perf_counter() - start
    if args.save:
        ranker.save(args.save, include_encoder=bool(args.fine_tune_epochs))

    print("| held out | pairs | ranker | longer wins | ranker, length-balanced | ranker where the human answer is longer |")
    print("|---|---|---|---|---|---|")
    results = {}
    for source in sorted({r.source for r in test_rows}):
        report = evaluate(ranker, [r for r in test_rows if r.source == source], device=args.device, precision="auto")
        lc = report["length_controlled"]
        results[source] = r = {"n_pairs": report["n_pairs"], "accuracy": report["pairwise_accuracy"],
                               "length_baseline": report["length_baseline"]["pairwise_accuracy"],
                               "length_balanced": lc["balanced_accuracy"], "human_longer": lc["better_not_longer"]}
        print(f"| {source} | {r['n_pairs']} | {r['accuracy']:.3f} | {r['length_baseline']:.3f} | "
              f"{_fmt(r['length_balanced'])} | {_fmt(r['human_longer']['accuracy'])} "
              f"({r['human_longer']['n_pairs']} pairs) |")
    pools = compare_pools(ranker, args.data, args.pool_sample, args.pool_seed, args.device)
    print(json.dumps({"held_out": held, "length_debias": debias, "lm_surprisal": args.lm_surprisal,
                      "predict_lm": args.predict_lm,
                      "train_seconds": round(train_s, 1),
                      "stages": {k: {"best_val_accuracy": v["best_val_accuracy"], "best_epoch": v["best_epoch"]}
                                 for k, v in stages.items()},
                      "results": results, "pools": pools}))


def compare_pools(ranker, data: Path, sample: int, seed: int, device: str, engine: str = "torch",
                  precision: str = "auto") -> dict:
    """AUC of 'the LLM-pool answer wins' for the ranker's score and for answer length, per pool pair, scored
    by `engine` (scar_core.engine) at `precision`."""
    from scar_core.engine import local_engine

    scorer = local_engine(ranker, engine, device, precision)
    if not sample:
        return {}
    scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in sorted({name for pair in POOL_PAIRS for name in pair}):
        examples = load(data / "pools" / name, lenient=True).examples
        keep = np.random.default_rng(seed).permutation(len(examples))[:sample]
        examples = [examples[i] for i in sorted(keep)]
        scores = scorer.score_examples(examples).score
        scored[name] = (scores, np.array([len(e.response) for e in examples]))
    print("| human pool | LLM pool | ranker AUC (LLM answer scores higher) | length AUC (LLM answer longer) |")
    print("|---|---|---|---|")
    out = {}
    for human, llm in POOL_PAIRS:
        labels = np.r_[np.zeros(len(scored[human][0])), np.ones(len(scored[llm][0]))]
        auc = roc_auc_score(labels, np.r_[scored[human][0], scored[llm][0]])
        length = roc_auc_score(labels, np.r_[scored[human][1], scored[llm][1]])
        out[f"{human} vs {llm}"] = {"ranker_auc": round(float(auc), 4), "length_auc": round(float(length), 4),
                                     "rows": [len(labels) - int(labels.sum()), int(labels.sum())]}
        print(f"| {human} | {llm} | {auc:.3f} | {length:.3f} |")
    return out


def other_llm_rows(data: Path, rows: list[TrainRow]) -> list[TrainRow]:
    """Self-instruct human answers paired with other LLMs' answers to the same instructions."""
    human = {r.instruction: r.responses["human"] for r in rows
             if (r.source or "").startswith("self-instruct") and "human" in r.responses}
    out = []
    for name in OTHER_LLMS:
        path = data / "pools" / name
        if not path.is_file():
            continue
        for item in json.loads(path.read_text()):
            if item["instruction"] in human and item.get("output", "").strip():
                out.append(TrainRow(item["instruction"], {"human": human[item["instruction"]], "direct": item["output"]},
                                    source=f"self-instruct/{item['generator']}"))
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
