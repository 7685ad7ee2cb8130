"""Store queries at app scale: import, paged/filtered results, whole-run arrays and the cache copy.

    python bench/store.py [--rows 100000] [--db URL]   (default: a fresh SQLite file in a temp folder)

Prints one line per operation with its wall-clock time. Vectors are 384-d like MiniLM's.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db import datasets, labels, open_store, rankers, runs  # noqa: E402
from db.runs import ResultFilter  # noqa: E402


def timed(what: str, work):
    start = time.perf_counter()
    value = work()
    print(f"{what:<58} {time.perf_counter() - start:8.3f} s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scar-store-bench-"))
    store = open_store(args.db or str(folder / "bench.db"))
    rng = np.random.default_rng(0)
    words = np.array("the a model answer style data quick brown fox jumps over lazy dog".split())
    path = folder / "pairs.jsonl"
    with path.open("w") as f:
        for i in range(args.rows):
            text = " ".join(rng.choice(words, size=int(rng.integers(5, 80))))
            f.write(json.dumps({"instruction": f"Question {i}: {text[:60]}", "output": text,
                                "source": f"src{i % 5}"}) + "\n")
    print(f"{args.rows} rows, store {store.url.split('@')[-1]}")
    ds = timed("import_file (load + one transaction)", lambda: datasets.import_file(store, path))
    ranker = rankers.register_ranker(store, "bench", "/bench", "0" * 64, "bench")
    run = runs.create_run(store, ds.id, ranker.id, "cpu", "fp32")
    todo = timed("missing_examples", lambda: runs.missing_examples(store, run.id))

    def write_results() -> None:
        for lo in range(0, len(todo), 1000):
            part = todo[lo:lo + 1000]
            vectors = rng.standard_normal((len(part), 2, 384)).astype(np.float32)
            rows = [{"example_id": e.id, "score": float(rng.normal()), "v_lf": runs.pack(v[0]),
                     "v_is": runs.pack(v[1])} for e, v in zip(part, vectors)]
            with store.write() as session:
                runs.add_results(session, run.id, rows)
    timed("add_results, 1000-row commits with 2x384 float16 vectors", write_results)
    ids, _ = runs.run_scores(store, run.id)
    for i in ids[:2000:7].tolist():
        labels.set_label(store, i, "keep", "bench")
    timed("results_page, best 50", lambda: runs.results_page(store, run.id, limit=50))
    timed("results_page, page 1000 (offset 50k)", lambda: runs.results_page(store, run.id, offset=50_000, limit=50))
    timed("results_page, text search 'fox jumps'", lambda: runs.results_page(
        store, run.id, ResultFilter(search="fox jumps"), limit=50))
    timed("results_page, source + score range + label", lambda: runs.results_page(
        store, run.id, ResultFilter(source="src2", score_min=0.5, label="keep"), limit=50))
    lasso = ids[rng.choice(len(ids), size=min(20_000, len(ids)), replace=False)].tolist()
    timed("results_page, 20k-id lasso", lambda: runs.results_page(store, run.id, ResultFilter(ids=lasso), limit=50))
    timed("count_results, search", lambda: runs.count_results(store, run.id, ResultFilter(search="lazy dog")))
    timed("run_scores (all scores as numpy)", lambda: runs.run_scores(store, run.id))
    timed("score_histogram, 50 bins", lambda: runs.score_histogram(store, run.id))
    timed("run_vectors lf, sample 10k", lambda: runs.run_vectors(store, run.id, "lf", sample=10_000))
    timed("run_vectors lf, all", lambda: runs.run_vectors(store, run.id, "lf"))
    again = runs.create_run(store, ds.id, ranker.id, "cpu", "fp32")
    copied = timed("fill_from_cache (re-score unchanged dataset)", lambda: runs.fill_from_cache(store, again.id))
    assert copied == args.rows


if __name__ == "__main__":
    main()
