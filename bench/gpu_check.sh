#!/usr/bin/env bash
# The prepared GPU check (issue 29): one script, under 8 minutes on one H100/H200.
#   1. the GPU-marked tests (pytest -m gpu);
#   2. the default ranker's pairs/s at bf16 on the 640-pair Dolly + ShareGPT mix and on 20,000
#      ShareGPT pairs (torch engine), with the peak GPU memory;
#   3. the Ray engine with one GPU actor on the 640-pair mix (pairs/s, Spearman to the local engine).
#
#   bash bench/gpu_check.sh                      # on a GPU machine
#   DEVICE=cpu MIX=16 SHAREGPT=16 bash bench/gpu_check.sh   # a dry run of the Python parts on a CPU
#
# POOLS names the folder holding sharegpt_6k.sharegpt.jsonl and dolly_2k.alpaca.json (default
# ../shared/data/pools). The last line is one JSON object with every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export POOLS="${POOLS:-$(cd .. && pwd)/shared/data/pools}" DEVICE="${DEVICE:-cuda}" MIX="${MIX:-640}"
export SHAREGPT="${SHAREGPT:-20000}" RAY_ROWS="${RAY_ROWS:-$MIX}"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "== GPU-marked tests"
if [ "$DEVICE" = cuda ]; then
  timeout 150 python -m pytest -q -m gpu tests/ -p no:cacheprovider || echo "GPU tests FAILED (status $?)"
else
  echo "skipped: DEVICE=$DEVICE"
fi

echo "== throughput and the Ray engine"
timeout 330 python - <<'PY'
import json, os, sys, time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
sys.path.insert(0, str(Path.cwd() / "bench"))
import numpy as np
import torch
from scipy.stats import spearmanr

from scar_core.engine import TorchEngine
from scar_core.load import load
from scar_core.ranker import load_ranker
from throughput import sample_pool

device, pools = os.environ["DEVICE"], Path(os.environ["POOLS"])
cuda = device.startswith("cuda")
precision = "bf16" if cuda else "fp32"
mix = sample_pool([pools / "sharegpt_6k.sharegpt.jsonl", pools / "dolly_2k.alpaca.json"], int(os.environ["MIX"]), 0)
sharegpt = load(pools / "sharegpt_6k.sharegpt.jsonl", lenient=True).examples[:int(os.environ["SHAREGPT"])]
ranker = load_ranker("default")
engine = TorchEngine(ranker, device, precision)
engine.prepare()
engine.score(*[x[:8] for x in mix])  # warm-up: kernels, lazy imports
result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "precision": precision}


def timed(name, instructions, responses, left=None):
    if cuda:
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    scores = engine.score(instructions, responses, left_truncate=left)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    result[name] = {"pairs": len(responses), "seconds": round(seconds, 2), "pairs_per_s": round(len(responses) / seconds, 1),
                    "peak_gpu_gib": None if peak is None else round(peak, 2)}
    print(f"{name}: {len(responses)} pairs in {seconds:.1f} s = {len(responses) / seconds:.1f} pairs/s at {precision}"
          + ("" if peak is None else f", peak GPU memory {peak:.2f} GiB"), flush=True)
    return scores


local = timed("mix", *mix)
timed("sharegpt", [e.ranker_instruction() for e in sharegpt], [e.response for e in sharegpt],
      [bool(e.context) for e in sharegpt])

from scar_core.jobs.ray import RayCluster, RayEngine  # noqa: E402

rows = int(os.environ["RAY_ROWS"])
ray_engine = RayEngine(ranker, "default", RayCluster(workers=1), "torch", device="cuda" if cuda else "cpu",
                       precision=precision)
start = time.perf_counter()
on_ray = ray_engine.score(mix[0][:rows], mix[1][:rows])
seconds = time.perf_counter() - start
rho = float(spearmanr(on_ray.score, local.score[:rows])[0])
result["ray_one_actor"] = {"pairs": rows, "seconds_with_startup": round(seconds, 2),
                           "pairs_per_s": round(rows / seconds, 1), "spearman_to_local": round(rho, 6),
                           "max_abs_diff_to_local": float(np.abs(on_ray.score - local.score[:rows]).max())}
print(f"Ray engine, one {'GPU' if cuda else 'CPU'} actor: {rows} pairs in {seconds:.1f} s with start-up "
      f"= {rows / seconds:.1f} pairs/s; Spearman to the local engine {rho:.6f}", flush=True)
print(json.dumps(result))
PY
