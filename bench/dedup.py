"""Near-duplicate detection at scale: time `clean(dedup="near")` on 10k and 100k pairs.

    python bench/dedup.py [--sizes 10000 100000] [--seed 0] [--lang-rows 10000]

The rows are built from the shared pools (../shared/data/pools: every pair of every pool, about
29k) or, when those are absent, from synthetic Zipf-distributed text. 30% of each size are distinct
pool pairs; the other 70% are perturbed copies of them (seeded): each copy gets a word edit rate
drawn from 0-12% (words deleted, replaced or swapped with a neighbour), and some copies change
letter case or spacing. So every size carries many real near duplicates, some below the threshold.

Each size runs in its own process so its peak memory (getrusage ru_maxrss) is its own; the memory
held before cleaning (the rows themselves) is shown beside it. CPU seconds are given as well as
wall seconds because the development machines are shared. Also times the language check on
--lang-rows rows. The last line is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from scar_core.clean import clean  # noqa: E402
from scar_core.example import Example  # noqa: E402
from scar_core.load import load  # noqa: E402

POOLS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pools"
ORIGINAL_SHARE = 0.3


def base_pairs(seed: int) -> tuple[list[Example], str]:
    files = sorted(POOLS.glob("*.json*")) if POOLS.is_dir() else []
    if files:
        return [ex for f in files for ex in load(f, lenient=True).examples], "shared pools"
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    weights = 1 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()

    def text(n: int) -> str:
        return " ".join(vocab[rng.choice(len(vocab), n, p=weights)])

    return [Example(instruction=text(int(rng.integers(5, 40))), response=text(int(rng.integers(20, 400))))
            for _ in range(30_000)], "synthetic Zipf text"


def perturb(text: str, rate: float, rng: np.random.Generator, vocab: list[str]) -> str:
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            continue
        out.append(vocab[int(rng.integers(len(vocab)))] if r < 2 * rate / 3 else w)
        if rate * 2 / 3 <= r < rate and len(out) > 1:
            out[-1], out[-2] = out[-2], out[-1]
    text = " ".join(out)
    style = rng.random()
    return text.upper() if style < 0.1 else text.lower() if style < 0.2 else text.replace(" ", "  ") if style < 0.3 \
        else text


def build(size: int, seed: int) -> tuple[list[Example], int, str]:
    """`size` rows: distinct pool pairs, then perturbed copies of them; and how many are copies."""
    bases, origin = base_pairs(seed)
    rng = np.random.default_rng(seed)
    originals = [bases[i] for i in rng.permutation(len(bases))[: min(len(bases), int(size * ORIGINAL_SHARE))]]
    vocab = [w for ex in originals[:2000] for w in ex.response.split()]
    rows = list(originals)
    while len(rows) < size:
        ex = originals[int(rng.integers(len(originals)))]
        rate = float(rng.uniform(0, 0.12))
        rows.append(Example(instruction=perturb(ex.instruction, rate, rng, vocab),
                            response=perturb(ex.response, rate, rng, vocab)))
    return rows, size - len(originals), origin


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, seed: int, lang_rows: int) -> dict:
    rows, copies, origin = build(size, seed)
    before = rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = clean(rows, dedup="near", lang="any")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counts = report.counts()
    flagged_copies = int(report.flagged[size - copies:].sum())
    result = {"rows": size, "source": origin, "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
              "rows_per_s": round(size / wall), "rss_before_mb": round(before), "peak_rss_mb": round(rss_mb()),
              "exact_duplicates": counts["exact_duplicates"], "near_duplicates": counts["near_duplicates"],
              "injected_copies": copies, "injected_copies_flagged": flagged_copies,
              "originals_flagged": int(report.flagged[: size - copies].sum())}
    if lang_rows:
        sample = rows[:lang_rows]
        cpu0, t0 = time.process_time(), time.perf_counter()
        found = clean(sample, dedup="none", lang="en").counts()["language"]
        lang_wall, lang_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        result.update(lang_rows=len(sample), lang_seconds=round(lang_wall, 2), lang_cpu_seconds=round(lang_cpu, 2),
                      lang_rows_per_s=round(len(sample) / lang_wall), lang_flagged=found)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lang-rows", type=int, default=10_000, help="rows for the language-check timing (0: skip)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.seed, args.lang_rows)))
        return
    print(f"near-duplicate detection, {os.cpu_count()} CPUs visible, threshold 0.5, word 3-grams, 128 permutations")
    results = []
    for i, size in enumerate(args.sizes):
        lang_rows = args.lang_rows if i == 0 else 0
        done = subprocess.run([sys.executable, __file__, "--one", str(size), "--seed", str(args.seed),
                               "--lang-rows", str(lang_rows)], capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['rows']:>7} rows ({r['source']}): {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
              f"{r['rows_per_s']:,} rows/s; peak RSS {r['peak_rss_mb']} MB ({r['rss_before_mb']} MB before "
              f"cleaning); flagged {r['exact_duplicates']} exact + {r['near_duplicates']} near; "
              f"{r['injected_copies_flagged']}/{r['injected_copies']} injected copies and "
              f"{r['originals_flagged']} originals flagged")
        if "lang_rows" in r:
            print(f"         language check on {r['lang_rows']} rows: {r['lang_seconds']:.1f} s wall, "
                  f"{r['lang_cpu_seconds']:.1f} s CPU, "
                  f"{r['lang_rows_per_s']:,} rows/s, {r['lang_flagged']} not English")
    print(json.dumps({"bench": "dedup", "results": results}))


if __name__ == "__main__":
    main()
