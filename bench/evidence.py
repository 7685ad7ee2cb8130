"""Does a cut beat cheap alternatives of the same size? The evidence, on the public pools.

    python bench/evidence.py [--pools dolly alpaca lima sharegpt] [--limit 2000] [--model default]
                             [--ratio 0.1] [--coverage 0.5 1.0] [--blend "scar=1, novelty=0.5"] [--seed 0]
                             [--scores-cache DIR]

Per pool in ../shared/data/pools (skipped when absent): a seeded random sample of `--limit` pairs,
loaded with scar_core.load (ShareGPT leniently), cleaned (near duplicates, English) and scored with the
ranker (`--model`; scores and v_lf are cached under `--scores-cache`, one file per pool, ranker scoring
identity and precision, keyed by pair id: a rerun scores only pairs not scored before, and a larger
`--limit` extends the same sample); then the cut (`--ratio` of the
eligible pairs, scar_core.select), its coverage-aware variants (scar_core.coverage, each `--coverage`)
a cut on a `--blend` of the score and signals (scar_core.signals: kNN novelty, length; each signal's
Spearman with the score is printed) and its three matched baselines (scar_core.baselines: random,
longest, length-matched), compared by
scar_core.evidence: clusters touched (of the pool's k-means clusters of v_lf), diversity (mean pairwise
cosine distance of v_lf), mean response length in words, mean score, overlap with the longest-k
baseline. Prints a table per pool, the seconds each step took, and ends with one JSON line of it all.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POOLS = ROOT.parent / "shared" / "data" / "pools"
FILES = {"dolly": "dolly_2k.alpaca.json", "alpaca": "alpaca_2k.alpaca.json", "lima": "lima_1k.alpaca.json",
         "sharegpt": "sharegpt_6k.sharegpt.jsonl"}
COLUMNS = ["rows", "clusters touched", "cluster share", "diversity", "length mean", "length median",
           "mean score", "overlap with longest"]

from scar_core.baselines import baselines  # noqa: E402
from scar_core.clean import clean  # noqa: E402
from scar_core.coverage import cluster_rows, coverage_order  # noqa: E402
from scar_core.evidence import evidence  # noqa: E402
from scar_core.export import response_words  # noqa: E402
from scar_core.load import load  # noqa: E402
from scar_core.ranker import checkpoint_hashes, load_ranker  # noqa: E402
from scar_core.score import score_examples  # noqa: E402
from scar_core.select import select  # noqa: E402
from scar_core.signals import SCAR, combine, knn_novelty, parse_weights  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402


class Timer(dict):
    """Seconds per named step."""

    def __call__(self, name: str, fn, *a, **kw):
        start = time.perf_counter()
        out = fn(*a, **kw)
        self[name] = round(time.perf_counter() - start, 2)
        return out


def scored(examples, args, identity: str, name: str, ranker_box: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(score, v_lf) of the examples and how many were scored now: pairs already in the pool's cache file
    (one per ranker identity, precision and pool, keyed by pair id) are read from it."""
    key = hashlib.sha256(f"{identity}\n{args.precision}\n{name}".encode()).hexdigest()[:24]
    path = Path(args.scores_cache) / f"{name}-{key}.npz"
    ids = np.array([e.id for e in examples])
    known, known_score, known_v = np.array([], dtype=ids.dtype), np.zeros(0, np.float32), None
    if path.is_file():
        with np.load(path) as cached:
            known, known_score, known_v = cached["ids"], cached["score"], cached["v_lf"]
    missing = np.flatnonzero(~np.isin(ids, known))
    if len(missing):
        if "ranker" not in ranker_box:
            start = time.perf_counter()
            ranker_box["ranker"] = load_ranker(args.model)
            ranker_box["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        s = score_examples(ranker_box["ranker"], [examples[i] for i in missing], device="cpu",
                           precision=args.precision)
        ranker_box["score_s"] = time.perf_counter() - start
        known = np.concatenate([known, ids[missing]])
        known_score = np.concatenate([known_score, s.score])
        known_v = s.v_lf if known_v is None else np.concatenate([known_v, s.v_lf])
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=known, score=known_score, v_lf=known_v)
    at = {pair: i for i, pair in enumerate(known.tolist())}
    where = np.array([at[pair] for pair in ids.tolist()], dtype=np.int64)
    return known_score[where], known_v[where], len(missing)


def run_pool(name: str, args, identity: str, ranker_box: dict) -> dict | None:
    path = POOLS / FILES[name]
    if not path.is_file():
        print(f"{name}: {path} absent, skipped")
        return None
    t = Timer()
    loaded = t("load", load, path, lenient=name == "sharegpt")
    everything = loaded.examples
    rng = np.random.default_rng(args.seed)
    take = np.sort(rng.permutation(len(everything))[:args.limit])  # a larger limit extends the same sample
    examples = [everything[i] for i in take]
    report = t("clean", clean, examples, dedup="near", lang="en")
    todo = report.rows("candidates")
    score = np.full(len(examples), np.nan)
    s, v, fresh = t("score", scored, [examples[i] for i in todo], args, identity, name, ranker_box)
    score[todo] = s
    vectors = np.zeros((len(examples), v.shape[1]), dtype=np.float32)
    vectors[todo] = v
    lengths = response_words(examples).astype(float)
    sources = np.array([e.source for e in examples], dtype=object)
    rule = dict(clusters=report.cluster_ids, left_out_by=report.left_out_by,
                sources=sources)  # as `rank` cleans
    cut = t("cut", select, score, "ratio", args.ratio, **rule)
    clusters, k = t("clusters", cluster_rows, vectors, cut.pool, seed=args.seed)
    subsets = {"cut": cut}
    for c in args.coverage:
        cov = t(f"coverage {c}", coverage_order, score, None, c, pool=cut.pool, clusters=clusters, seed=args.seed)
        chosen = select(score, "ratio", args.ratio, priority=cov.priority, **rule)
        chosen.ordering = cov.params()
        subsets[f"coverage {c}"] = chosen
    if args.blend:  # the SCAR score blended with kNN novelty and length, as `rank --weights` cuts
        novelty = np.full(len(examples), np.nan)
        novelty[cut.pool] = t("novelty", knn_novelty, vectors[cut.pool])
        columns = {SCAR: score, "novelty": novelty, "length": lengths}
        weights = parse_weights(args.blend)
        chosen = select(t("blend", combine, columns, weights), "ratio", args.ratio, **rule)
        subsets[f"blend {args.blend}"] = chosen
        eligible = cut.pool
        signal_rho = {n: round(float(spearmanr(score[eligible], v[eligible]).statistic), 3)
                      for n, v in columns.items() if n != SCAR}
        print(f"{name}: Spearman of each signal with the SCAR score over eligible rows: {signal_rho}")
    subsets.update(t("baselines", baselines, cut, score, lengths, sources=sources, seed=args.seed))
    table, record = t("evidence", evidence, subsets, scores=score, lengths=lengths, vectors=vectors,
                      clusters=clusters, sources=sources, pool=cut.pool)
    print(f"\n== {name}: {len(examples)} pairs sampled of {len(everything)} ({path.name}); eligible {cut.eligible} "
          f"(left out {cut.left_out}); cut {len(cut.kept)} = {args.ratio:.0%}; {k} clusters of v_lf; "
          f"{fresh} pairs scored now, {len(todo) - fresh} from the cache")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[COLUMNS].to_string(float_format=lambda x: f"{x:.3f}"))
    print("seconds: " + ", ".join(f"{step} {secs}" for step, secs in t.items()))
    if fresh:
        print(f"scoring: {fresh / ranker_box['score_s']:.2f} pairs/s (without loading the ranker, "
              f"{ranker_box.get('load_s', 0):.1f} s once per run)")
    return {"pool": name, "pairs": len(examples), "eligible": cut.eligible, "clusters": k, "seconds": dict(t),
            "scored_now": fresh, "evidence": record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", nargs="+", default=list(FILES), choices=list(FILES))
    parser.add_argument("--limit", type=int, default=2000, help="pairs per pool (a seeded random sample)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--coverage", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blend", default="scar=1, novelty=0.5",
                        help="also cut on this blend of the score and signals (novelty; length in words); '' for none")
    parser.add_argument("--scores-cache", default="/tmp/scar_evidence_cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    identity = checkpoint_hashes(args.model)[1]
    ranker_box: dict = {}
    start = time.perf_counter()
    results = [r for name in args.pools if (r := run_pool(name, args, identity, ranker_box)) is not None]
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    print(json.dumps({"model": args.model, "limit": args.limit, "ratio": args.ratio, "seed": args.seed,
                      "pools": results}))


if __name__ == "__main__":
    main()
