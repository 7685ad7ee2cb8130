"""Leave-one-family-out accuracy of the head-only recipe on ../shared/data/ranker + ranker_extra.

    python bench/heldout.py --families [--cap N] [--lm-surprisal] [--seed S] [--only FAMILY ...]

Used by bench/heldout.py --families. Each source family (SQuAD, news summaries, FLASK, Stack
Overflow, TruthfulQA, essays, HC3, self-instruct) is held out in turn: a ranker is trained on the
other families (plus ReAlign, which is always in training) with the recipe's first step (frozen
encoder, head trained on cached encoder outputs, length-debiasing rows, 10 epochs, lr 3e-4, and with
--lm-surprisal the LM term), then scored on the held-out family's rows. One more run trains on all
families: its validation accuracy and its scores on fastdetect, a continuation task ("write about
150 words starting with ...") never used for training as it is the weakest fit to instruction
following. Families are grouped by instruction, so an instruction is never on both sides: the
self-instruct family is the 252 tasks of ranker/selfinstruct_252.jsonl (gpt-3.5) together with their
answers by six more LLMs in ranker_extra. Per held-out family: pairwise accuracy, the longer-wins
baseline, length-balanced accuracy; per run, the three unpaired pools of bench/heldout.py (AUC).

CPU budget: --cap keeps a seeded sample of N instructions per family (all their rows, so FLASK and
self-instruct keep several LLM answers per instruction); the frozen encoder's outputs and the LM's
NLL are computed once per distinct text and shared by every run. Length-debiasing rows are built
once over all rows (seeded), so each run's training side gets the same shortened answers for the
same rows (the recipe's own function, applied once instead of once per run).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import scar_core.train as train_module
from scar_core.evaluate import pairwise_report
from scar_core.load import load
from scar_core.ranker import new_ranker
from scar_core.training_data import ROLES, TrainRow, length_debiased, read_training_rows

FAMILIES = {
    "squad": ["ranker_extra/mgtbench_squad1_chatgpt.jsonl"],
    "news": ["ranker_extra/goyal_newssumm_davinci002.jsonl", "ranker_extra/sumcot_element_aware.jsonl",
             "ranker_extra/newssumm_writers_davinci002.jsonl"],
    "flask": ["ranker_extra/flask_refs_vs_llms.jsonl"],
    "stackoverflow": ["ranker_extra/stackoverflow_chatgpt_2000.jsonl"],
    "truthfulqa": ["ranker_extra/mgtbench_truthfulqa_chatgpt.jsonl"],
    "essays": ["ranker_extra/outfox_essays.jsonl"],
    "hc3": ["ranker/hc3_1000.jsonl"],
    "self-instruct": ["ranker/selfinstruct_252.jsonl", "ranker_extra/selfinstruct252_alpacaeval_more_llms.jsonl"],
}
ALWAYS_TRAIN = ["ranker/realign_nq_100.jsonl"]
EVAL_ONLY = {"fastdetect": ["ranker_extra/fastdetect_writing_xsum.jsonl"]}


def family_rows(data: Path, cap: int, seed: int) -> dict[str, list[TrainRow]]:
    """family -> rows of a seeded sample of `cap` instructions (0: all), realign under "realign"."""
    out = {}
    for family, files in {**FAMILIES, **EVAL_ONLY, "realign": ALWAYS_TRAIN}.items():
        rows = read_training_rows([data / f for f in files])
        instructions = list(dict.fromkeys(r.instruction for r in rows))
        if cap and family != "realign" and len(instructions) > cap:
            keep = {instructions[i] for i in np.random.default_rng(seed).permutation(len(instructions))[:cap]}
            rows = [r for r in rows if r.instruction in keep]
        out[family] = rows
    seen: dict[str, str] = {}
    for family, rows in out.items():  # an instruction shared by two families stays with the first
        out[family] = [r for r in rows if seen.setdefault(r.instruction, family) == family]
    return out


class Cache:
    """Frozen-encoder outputs per text and LM NLL per (instruction, response), computed once."""

    def __init__(self, ranker, lm: bool, device: str):
        from scar_core.device import resolve_device, resolve_precision
        from scar_core.score import BatchEncoder

        self.ranker, self.lm, self.device = ranker, lm, device
        dev = resolve_device(device)
        self.dev, self.dtype = dev, resolve_precision("auto", dev)
        self.encoder = BatchEncoder(ranker, dev, self.dtype, 64)
        self.vectors: dict[tuple[bool, str], tuple[np.ndarray, np.ndarray | None]] = {}
        self.nll: dict[tuple[str, str], float] = {}

    def encode(self, texts, want_max: bool) -> None:
        todo = list(dict.fromkeys(t for t in texts if (want_max, t) not in self.vectors))
        for lo in range(0, len(todo), 256):
            chunk = todo[lo:lo + 256]
            ids, _ = self.encoder.tokenize(chunk, left=False)
            pooled, maxed = self.encoder.encode(ids, want_max)
            for j, text in enumerate(chunk):
                self.vectors[(want_max, text)] = (pooled[j], maxed[j] if want_max else None)
        if todo:
            print(f"  encoded {len(todo)} texts ({len(self.vectors)} cached)", file=sys.stderr, flush=True)

    def measure(self, pairs) -> None:
        if not self.lm:
            return
        todo = list(dict.fromkeys(p for p in pairs if p not in self.nll))
        if todo:
            start = time.perf_counter()
            nll = self.ranker.lm_nll([p[0] for p in todo], [p[1] for p in todo], self.dev, self.dtype)
            self.nll.update(zip(todo, nll.tolist()))
            print(f"  LM measured {len(todo)} responses in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)

    def prepare(self, rows: list[TrainRow]) -> None:
        self.encode([r.instruction for r in rows], False)
        self.encode([t for r in rows for t in r.responses.values()], True)
        self.measure([(r.instruction, t) for r in rows for t in r.responses.values()])

    def features(self, ranker, rows, *_args, **_kwargs) -> train_module.Features:
        """Drop-in for scar_core.train.encode_features, from the cache."""
        self.prepare(list(rows))
        h = ranker.hidden_dim
        e_i = torch.from_numpy(np.stack([self.vectors[(False, r.instruction)][0] for r in rows]))
        response, form = {}, {}
        for role in ROLES:
            pooled, maxed = np.zeros((len(rows), h), np.float32), np.zeros((len(rows), h), np.float32)
            for i, row in enumerate(rows):
                if role in row.responses:
                    pooled[i], maxed[i] = self.vectors[(True, row.responses[role])]
            response[role], form[role] = torch.from_numpy(pooled), torch.from_numpy(maxed)
        return train_module.Features(e_i, response, form)

    def scores(self, ranker, instructions: list[str], responses: list[str]) -> np.ndarray:
        """The trained head's scores (LM term included) from cached encoder outputs and NLLs."""
        e_i = torch.from_numpy(np.stack([self.vectors[(False, t)][0] for t in instructions]))
        e_r = torch.from_numpy(np.stack([self.vectors[(True, t)][0] for t in responses]))
        v_lf = torch.from_numpy(np.stack([self.vectors[(True, t)][1] for t in responses]))
        nll = (torch.tensor([self.nll[(i, r)] for i, r in zip(instructions, responses)], dtype=torch.float64)
               if ranker.lm_term is not None else None)
        with torch.inference_mode():
            score, _ = ranker.head(e_i, e_r, v_lf, nll)
        return score.float().numpy()

    def row_scores(self, ranker, rows: list[TrainRow]) -> dict[str, np.ndarray]:
        keys = [(i, role) for i, row in enumerate(rows) for role in ROLES if role in row.responses]
        s = self.scores(ranker, [rows[i].instruction for i, _ in keys], [rows[i].responses[r] for i, r in keys])
        out = {role: np.full(len(rows), np.nan, np.float32) for role in ROLES}
        for (i, role), v in zip(keys, s):
            out[role][i] = v
        return out


def pool_rows(data: Path, pools: list[tuple[str, str]], sample: int, seed: int) -> dict[str, tuple[list, list]]:
    """name -> (instructions, responses) of the same seeded pool samples as bench/heldout.py."""
    out = {}
    for name in sorted({n for pair in pools for n in pair}):
        examples = load(data / "pools" / name, lenient=True).examples
        keep = np.random.default_rng(seed).permutation(len(examples))[:sample]
        examples = [examples[i] for i in sorted(keep)]
        out[name] = ([e.ranker_instruction() for e in examples], [e.response for e in examples])
    return out


def run(args, pool_pairs: list[tuple[str, str]]) -> None:
    """The sweep; with args.compare_lm, once without and once with the LM term on the same cache."""
    variants = [False, True] if args.compare_lm else [args.lm_surprisal]
    start = time.perf_counter()
    families = family_rows(args.data, args.cap, args.seed)
    for family, rows in families.items():
        pairs = sum(len(r.pairs()) for r in rows)
        print(f"{family}: {len(rows)} rows, {len({r.instruction for r in rows})} instructions, {pairs} pairs",
              file=sys.stderr)
    base = new_ranker("minilm", seed=args.seed, lm="smollm2" if any(variants) else None)
    if base.lm_term is not None and args.lm_max_tokens:
        base.lm_term.max_tokens = args.lm_max_tokens
    cache = Cache(base, any(variants), args.device)
    all_rows = [r for rows in families.values() for r in rows]
    # Length-debiasing rows once over all rows; each run's train() picks those of its training rows.
    shortened = {(r.instruction, r.responses["human"], r.where.removesuffix(" (direct answer shortened)")): r
                 for r in length_debiased(all_rows, args.seed)}
    train_module.length_debiased = lambda rows, seed=0, **kw: [
        shortened[k] for r in rows if (k := (r.instruction, r.responses.get("human"), r.where)) in shortened]
    train_module.encode_features = cache.features
    cache.prepare(all_rows + list(shortened.values()))
    pools = pool_rows(args.data, pool_pairs, args.pool_sample, args.pool_seed) if args.pool_sample else {}
    for ins, res in pools.values():
        cache.encode(ins, False)
        cache.encode(res, True)
        cache.measure(list(zip(ins, res)))
    prep_s = time.perf_counter() - start

    folds = [f for f in FAMILIES if not args.only or f in args.only] + ["(none)"]
    everything = {}
    for with_lm in variants:
        results = everything["with LM term" if with_lm else "without LM term"] = {}
        for held in folds:
            results[held] = one_fold(args, held, with_lm, families, cache, base, pools, pool_pairs)
        print("with the LM term" if with_lm else "without the LM term")
        print_tables(results, pool_pairs)
    print(json.dumps({"families": True, "cap_instructions": args.cap, "seed": args.seed,
                      "lm_max_tokens": base.lm_term.max_tokens if base.lm_term is not None else None,
                      "pool_sample": args.pool_sample, "prepare_s": round(prep_s, 1),
                      "rows": {f: len(r) for f, r in families.items()}, "results": everything}))


def one_fold(args, held: str, with_lm: bool, families: dict, cache: Cache, base, pools: dict,
             pool_pairs) -> dict:
    """Train without `held` ("(none)": on everything) and score the held-out rows and the pools."""
    train_rows = [r for f, rows in families.items() if f != held and f not in EVAL_ONLY for r in rows]
    ranker = new_ranker("minilm", seed=args.seed, lm="smollm2" if with_lm else None)
    if with_lm:
        ranker.lm_term.max_tokens = base.lm_term.max_tokens
        ranker.known_nll = dict(cache.nll)
        ranker._lm = base._lm
    t0 = time.perf_counter()
    features = cache.features(ranker, train_rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the head's small matmuls: one thread is faster, and far faster on a busy CPU
    try:
        outcome = train_module.train(ranker, train_rows, train_module.TrainConfig(
            epochs=args.head_epochs, lr=args.head_lr, freeze_encoder=True, seed=args.seed, device=args.device,
            length_debias=not args.no_length_debias), features=features)
    finally:
        torch.set_num_threads(threads)
    entry = {"train_rows": len(train_rows), "val_accuracy": outcome.best_val_accuracy,
             "best_epoch": outcome.best_epoch, "train_s": round(time.perf_counter() - t0, 1)}
    if ranker.lm_term is not None:
        entry["lm_weight"] = round(float(ranker.lm_weight), 4)
    tests = {held: families[held]} if held in families else {f: families[f] for f in EVAL_ONLY}
    for name, rows in tests.items():
        report = pairwise_report(rows, cache.row_scores(ranker, rows))
        lc = report["length_controlled"]
        entry[name] = {"pairs": report["n_pairs"], "accuracy": report["pairwise_accuracy"],
                       "longer_wins": report["length_baseline"]["pairwise_accuracy"],
                       "length_balanced": lc["balanced_accuracy"],
                       "human_longer": lc["better_not_longer"],
                       "by_source": {s: v["accuracy"] for s, v in report["by_source"].items()}}
    entry["pools"] = {}
    for human, llm in pool_pairs:
        if human in pools:
            a, b = cache.scores(ranker, *pools[human]), cache.scores(ranker, *pools[llm])
            labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
            entry["pools"][f"{human} vs {llm}"] = round(float(roc_auc_score(labels, np.r_[a, b])), 4)
    print(f"held out {held} ({'with' if with_lm else 'without'} LM): {json.dumps(entry)}",
          file=sys.stderr, flush=True)
    return entry


def print_tables(results: dict, pool_pairs) -> None:
    print("| held out | pairs | ranker | longer wins | ranker, length-balanced | human answer longer: ranker (pairs) "
          "| validation | " + " | ".join(f"{h.split('_')[0]} vs {l.split('.')[0]}" for h, l in pool_pairs) + " |")
    print("|---" * (7 + len(pool_pairs)) + "|")
    for held, entry in results.items():
        name = held if held in entry else next((k for k in EVAL_ONLY if k in entry), None)
        fig = entry.get(name) if name else None
        cells = [f"{held}" + (f" (model: all families; scored {name})" if name and name != held else ""),
                 *(["-"] * 4 if fig is None else
                   [str(fig["pairs"]), _f(fig["accuracy"]), _f(fig["longer_wins"]), _f(fig["length_balanced"])]),
                 "-" if fig is None else f"{_f(fig['human_longer']['accuracy'])} ({fig['human_longer']['n_pairs']})",
                 _f(entry["val_accuracy"])]
        cells += [_f(entry["pools"].get(f"{h} vs {l}")) for h, l in pool_pairs]
        print("| " + " | ".join(cells) + " |")


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"
