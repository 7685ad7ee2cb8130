"""Store queries at app scale: import, paged/filtered results, whole-run arrays and the cache copy.

    python bench/store.py [--rows 100000] [--db URL]   (default: a fresh SQLite file in a temp folder)

Prints one line per operation with its wall-clock time. Vectors are 384-d like MiniLM's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic_store import fill_run, new_run, timed, write_pairs  # noqa: E402
from db import open_store, runs  # noqa: E402
from scar_core.jobs import datasets as importing, labelling  # noqa: E402
from db.runs import ResultFilter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scar-store-bench-"))
    store = open_store(args.db or str(folder / "bench.db"))
    rng = np.random.default_rng(0)
    path = write_pairs(folder / "pairs.jsonl", args.rows, rng)
    print(f"{args.rows} rows, store {store.url.split('@')[-1]}")
    ds = timed("import_file (load + one transaction)", lambda: importing.import_file(store, path))
    run = new_run(store, ds)
    timed("add_results, 1000-row commits with 2x384 float16 vectors", lambda: fill_run(store, run, rng))
    ids, _ = runs.run_scores(store, run.id)
    labelled = ids[:2000:7].tolist()
    timed("labelling.label, one example", lambda: labelling.label(store, run.id, labelled[:1], "drop", "bench"))
    timed(f"labelling.label, bulk of {len(labelled)} (one action)",
          lambda: labelling.label(store, run.id, labelled, "keep", "bench"))
    labelling.label(store, run.id, labelled[::3], "drop", "bench2")  # a second annotator: some conflicts
    timed("labelling.undo_offer", lambda: labelling.undo_offer(store, run.id, "bench"))
    decided = timed("labelling.resolution (the label policy over the run)", lambda: labelling.resolution(store, run.id))
    all_ids = ids.tolist()
    timed("results_page, best 50", lambda: runs.results_page(store, run.id, limit=50))
    timed("results_page, page 1000 (offset 50k)", lambda: runs.results_page(store, run.id, offset=50_000, limit=50))
    timed("results_page, text search 'fox jumps'", lambda: runs.results_page(
        store, run.id, ResultFilter(search="fox jumps"), limit=50))
    timed("results_page, source + score range + label", lambda: runs.results_page(store, run.id, ResultFilter(
        source="src2", score_min=0.5, ids=labelling.label_filter(decided, "keep", all_ids)), limit=50))
    timed("results_page, label 'none' (unlabelled)", lambda: runs.results_page(
        store, run.id, ResultFilter(ids=labelling.label_filter(decided, "none", all_ids)), limit=50))
    timed("label_filter conflict + result_ids", lambda: runs.result_ids(
        store, run.id, ResultFilter(ids=labelling.label_filter(decided, "conflict", all_ids))))
    lasso = ids[rng.choice(len(ids), size=min(20_000, len(ids)), replace=False)].tolist()
    timed("results_page, 20k-id lasso", lambda: runs.results_page(store, run.id, ResultFilter(ids=lasso), limit=50))
    timed("count_results, search", lambda: runs.count_results(store, run.id, ResultFilter(search="lazy dog")))
    timed("run_scores (all scores as numpy)", lambda: runs.run_scores(store, run.id))
    timed("run_vectors lf, sample 10k", lambda: runs.run_vectors(store, run.id, "lf", sample=10_000))
    timed("run_vectors lf, all", lambda: runs.run_vectors(store, run.id, "lf"))
    again = runs.create_run(store, ds.id, run.ranker_id, "cpu", "fp32")
    copied = timed("fill_from_cache (re-score unchanged dataset)", lambda: runs.fill_from_cache(store, again.id))
    assert copied == args.rows
    said = timed(f"labelling.undo, the bulk of {len(labelled)}", lambda: labelling.undo(store, run.id, "bench"))
    assert said.startswith(f"Undone: labelled {len(labelled)} examples keep"), said


if __name__ == "__main__":
    main()
