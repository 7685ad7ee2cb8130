"""Scaling of the Ray engine: the same pool scored with 1, 2, ... Ray workers (actors).

    python bench/ray_scale.py [--model default|DIR] [--limit N] [--workers 1 2 4] [--address ADDRESS]
                              [--device auto|cpu|cuda] [--precision fp32|bf16|fp16] [--block-rows N]

Scores the seeded sample of bench/throughput.py (ShareGPT + Dolly from ../shared/data/pools) once per
worker count with scar_core.jobs.ray.iter_ray_scores, on a fresh local Ray instance with as many CPUs
as workers (or on the cluster at --address), one CPU per actor, or one GPU per actor where the
cluster has GPUs. Prints, per worker count, pairs/s over the whole call (actor start-up included) and
in steady state (from 10% of the rows to the end, start-up left out), and the scaling efficiency
steady(n) / (n x steady(1)). Worker counts default to 1, 2, 4, ... up to the GPUs, else the CPUs.
The machine's load average is printed before and after: on a shared machine, quote it with the figures.
The last line is one JSON object.
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

import torch  # noqa: E402

from scar_core.jobs.ray import RayCluster, iter_ray_scores  # noqa: E402
from throughput import add_pool_options, sample_pool  # noqa: E402

STEADY_FROM = 0.1  # share of the rows after which start-up is over


def default_workers() -> list[int]:
    """1, 2, 4, ... up to this machine's GPUs, else its CPUs."""
    most = torch.cuda.device_count() or os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 <= most:
        counts.append(counts[-1] * 2)
    return counts


def timed_run(args: argparse.Namespace, workers: int, instructions: list[str], responses: list[str]) -> dict:
    """Score the pool once on `workers` actors; wall and steady-state pairs/s."""
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    rows = sum(len(part.index) for part in iter_ray_scores(
        args.model, instructions, responses, cluster=RayCluster(args.address, workers, args.block_rows),
        device=args.device, precision=args.precision,
        progress=lambda done, _total, _rate: marks.append((time.perf_counter(), done))))
    wall = time.perf_counter() - start
    first = next((t, done) for t, done in marks if done >= STEADY_FROM * rows)
    last = marks[-1]
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    return {"workers": workers, "pairs": rows, "wall_s": round(wall, 1), "wall_pairs_per_s": round(rows / wall, 2),
            "steady_pairs_per_s": round(steady, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    add_pool_options(ap)
    ap.add_argument("--workers", type=int, nargs="+")
    ap.add_argument("--address", help="a running cluster (default: a local Ray instance per worker count)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--block-rows", type=int, help="rows per block and actor call (default 64 CPU, 2048 GPU)")
    args = ap.parse_args()
    if not all(p.is_file() for p in args.pool):
        sys.exit("the pools are missing (this benchmark needs ../shared/data)")
    instructions, responses = sample_pool(args.pool, args.limit, args.seed)
    print(f"load average before: {os.getloadavg()}; {len(responses)} pairs, model {args.model}", flush=True)
    results = []
    for workers in args.workers or default_workers():
        result = timed_run(args, workers, instructions, responses)
        base = results[0] if results else result
        ideal = workers / base["workers"] * base["steady_pairs_per_s"]
        result["efficiency"] = round(result["steady_pairs_per_s"] / ideal, 3)
        results.append(result)
        print(f"{workers} worker(s): {result['steady_pairs_per_s']} pairs/s steady, {result['wall_pairs_per_s']} "
              f"pairs/s with start-up ({result['wall_s']} s), scaling efficiency {result['efficiency']}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(json.dumps({"model": args.model, "pairs": len(responses), "device": args.device, "precision": args.precision,
                      "address": args.address, "load_average_after": os.getloadavg(), "results": results}))


if __name__ == "__main__":
    main()
