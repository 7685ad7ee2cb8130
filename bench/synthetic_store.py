"""A synthetic scored store for the scale benchmarks (bench/store.py, bench/scale.py, bench/app_pages.py).

Pairs are random word strings from five sources; a run's v_lf / v_is vectors (384-d, like MiniLM's)
come from a mixture of 20 clusters per space, so map projections see structure, and scores lean on
the form cluster.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from db import rankers, runs
from scar_core.jobs import datasets as importing
from db.models import Dataset, Run
from db.store import Store

WORDS = np.array("the a model answer style data quick brown fox jumps over lazy dog colour".split())


def timed(what: str, work, width: int = 58):
    """Run `work()`, print its wall-clock time and the load average, and return its value."""
    start = time.perf_counter()
    value = work()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{what:<{width}} {time.perf_counter() - start:8.3f} s   [load {load}]", flush=True)
    return value


def write_pairs(path: Path, rows: int, rng: np.random.Generator) -> Path:
    """A JSONL file of `rows` Alpaca pairs of 5-120 random words."""
    with path.open("w") as f:
        for i in range(rows):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(5, 120))))
            f.write(json.dumps({"instruction": f"Question {i}: {text[:60]}", "output": text,
                                "source": f"src{i % 5}"}) + "\n")
    return path


def import_pairs(store: Store, folder: Path, rows: int, rng: np.random.Generator) -> Dataset:
    return importing.import_file(store, write_pairs(folder / "pairs.jsonl", rows, rng))


def new_run(store: Store, dataset: Dataset, job_id: int | None = None, location: str = "/bench") -> Run:
    """A scoring run of `dataset` by a registered stand-in ranker (no model behind it)."""
    ranker = rankers.register_ranker(store, "bench", location, "0" * 64, "bench")
    return runs.create_run(store, dataset.id, ranker.id, "cpu", "fp32", job_id=job_id)


def fill_run(store: Store, run: Run, rng: np.random.Generator, commit_rows: int = 1000) -> np.ndarray:
    """Score every missing example of `run` with synthetic clustered vectors, committing every
    `commit_rows` rows; returns the example ids."""
    todo = runs.missing_examples(store, run.id)
    centers = rng.standard_normal((2, 20, 384)) * 3
    for lo in range(0, len(todo), commit_rows):
        part = todo[lo:lo + commit_rows]
        cluster = rng.integers(0, 20, (2, len(part)))
        lf = (centers[0][cluster[0]] + rng.standard_normal((len(part), 384))).astype(np.float32)
        is_ = (centers[1][cluster[1]] + rng.standard_normal((len(part), 384))).astype(np.float32)
        scores = cluster[0] * 0.1 + rng.normal(size=len(part))
        rows = [{"example_id": e.id, "score": float(s), "v_lf": runs.pack(a), "v_is": runs.pack(b)}
                for e, s, a, b in zip(part, scores, lf, is_)]
        with store.write() as session:
            runs.add_results(session, run.id, rows)
    return np.array([e.id for e in todo], dtype=np.int64)
