"""Does the Rank page's estimate hold? Estimate vs actual for scoring runs of 20, 150 and 1,000 pairs.

    python bench/estimate.py [--pool FILE] [--model minilm|default|DIR] [--sizes 20 150 1000] [--calibrate 30]

In a fresh store, as the app does it: import the pool, score a small calibration sample (the "score a
random sample first" button), then for each size ask scar_core.jobs.estimate for the time of the sample
run of that size, start it (a real worker process: worker start, ranker load, scoring, breakdown) and
time it from submission to finished. Each estimate is fitted on every run finished before it (the rate
model: start-up per ranker and device + cost per token), so the 20-pair estimate rests on the
calibration run alone and the 1,000-pair one on three runs. Prints one line per run (estimate, its
range, actual, actual/estimate) and a last line of JSON. Needs ../shared/data (skips without it).

`--model minilm` (the default here) scores with the bundled MiniLM encoder and a seeded head, no LM term:
plain SCAR's cost, so the 1,000-pair run takes minutes on a busy 2-core CPU; `--model default` times the
shipped ranker with its LM term (several times slower on a CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pools" / "dolly_2k.alpaca.json"


def timed_run(store, dataset_id: int, model: str, rows: int, precision: str) -> tuple[int, float]:
    """(run id, seconds from submission to finished) of a sample run scored by a worker process; a worker
    that dies before taking its job (on a tree other people are editing) is replaced by a new run."""
    from db import jobs
    from scar_core.jobs.score import start_score

    for _ in range(3):
        run, _ = start_score(store, dataset_id, model=model, device="cpu", precision=precision, sample=rows)
        while (job := jobs.get_job(store, run.job_id)).status in ("queued", "running"):
            time.sleep(0.5)
            if job.status == "queued":
                jobs.mark_stale(store)  # only a worker gone before claiming: a busy one may beat late
        if job.status == "done":
            return run.id, (job.finished_at - job.created_at).total_seconds()
        print(f"run {run.id} ended {job.status} ({job.error}); starting another", flush=True)
    raise SystemExit("three workers in a row did not finish")


def bench_model(name: str, folder: Path) -> str:
    """A checkpoint location: `minilm` is saved here (bundled MiniLM, seeded head, no LM term)."""
    if name != "minilm":
        return name
    from scar_core.ranker import new_ranker

    new_ranker("minilm", seed=0).save(folder / "minilm")
    return str(folder / "minilm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--model", default="minilm", help="minilm (see above), default or a checkpoint folder")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 150, 1000])
    parser.add_argument("--calibrate", type=int, default=30, help="rows of the first sample run (no estimate)")
    args = parser.parse_args()
    if not args.pool.is_file():
        print(f"skipped: {args.pool} is missing (../shared/data is not part of a fresh clone)")
        return 0

    from db.store import open_store
    from scar_core.device import precision_name, resolve
    from scar_core.jobs import datasets as importing
    from scar_core.jobs.estimate import estimate

    folder = Path(tempfile.mkdtemp(prefix="scar-estimate-"))
    store = open_store(f"sqlite:///{folder / 'studio.db'}")
    model = bench_model(args.model, folder)
    dataset = importing.import_file(store, args.pool)
    precision = precision_name(resolve("cpu", args.precision)[1])
    print(f"pool {args.pool.name}: {dataset.example_count} pairs; ranker {args.model}, cpu, {precision}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    run_id, took = timed_run(store, dataset.id, model, args.calibrate, args.precision)
    print(f"calibration: run {run_id}, {args.calibrate} pairs, {took:.1f} s", flush=True)
    figures = []
    for rows in args.sizes:
        guess = estimate(store, dataset.id, model, "cpu", args.precision, rows=rows)
        run_id, took = timed_run(store, dataset.id, model, rows, args.precision)
        ratio = took / guess.seconds
        figures.append({"rows": rows, "tokens": guess.tokens, "estimate_s": round(guess.seconds, 1),
                        "low_s": round(guess.low, 1), "high_s": round(guess.high, 1), "actual_s": round(took, 1),
                        "actual_over_estimate": round(ratio, 3), "within_1_5x": 1 / 1.5 <= ratio <= 1.5,
                        "fitted_on": list(guess.rate_runs)})
        print(f"{rows:>5} pairs ({guess.tokens:,} tokens): estimate {guess.seconds:6.1f} s "
              f"[{guess.low:.1f}-{guess.high:.1f}], actual {took:6.1f} s, actual/estimate {ratio:.2f} "
              f"({'within' if 1 / 1.5 <= ratio <= 1.5 else 'OUTSIDE'} 1.5x); {guess.how()}", flush=True)
    print(json.dumps({"pool": args.pool.name, "model": args.model, "precision": precision, "runs": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
