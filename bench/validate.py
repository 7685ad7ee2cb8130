"""Does the cut train a better model? `validate` on the Dolly + Alpaca pools, AlpacaEval prompts held out.

    python bench/validate.py [--work DIR] [--model default] [--scores SCORES.jsonl] [--ratio 0.1]
                             [--epochs 1 | --steps N] [--batch-size 8] [--lr 2e-4] [--max-tokens 256]
                             [--eval-rows 100] [--threads N] [--seed 0]
                             [--base-url URL --judge-model NAME [--judge-rows 100] [--gen-tokens 256]]

1. The pool: ../shared/data/pools/dolly_2k.alpaca.json (1,909 rows, human-written) and
   alpaca_2k.alpaca.json (2,000 rows, text-davinci-003), mixed in a seeded order: 3,909 rows, written
   to WORK/pool.json.
2. Scores: `python -m scar_core score WORK/pool.json --model MODEL` (the default ranker takes 10+ minutes
   on 2 cores for this pool; `--scores FILE` reuses a file `score` wrote for the same pool, and a missing
   FILE is written there, so a rerun skips this step).
3. The cut: the steps of `rank` (clean with its defaults, scar_core.select `--ratio`, the manifest,
   the export) on those scores, WORK/SELECTED.jsonl and its manifest; no baselines are listed, so
   validate builds random and longest-k of the same size from the pool.
4. `python -m scar_core validate WORK/SELECTED.jsonl.manifest.json --eval alpacaeval_805_gpt4.json
   --eval-rows N ...`: SmolLM2-135M-Instruct (bundled) + LoRA on the cut, random and longest-k, the cut
   `--epochs` passes (or `--steps` steps) of `--batch-size` rows and every baseline the same answer
   tokens; reference NLL of GPT-4 Turbo's AlpacaEval answers on a seeded sample of `--eval-rows` prompts.
   With `--base-url` and `--judge-model` (an OpenAI-compatible server) also the judge's win rate of the cut
   and longest-k against random, each pair in both orders (validate's "win vs random" column).

Prints the CPU, each step's seconds, validate's table and the whole run's wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POOLS = ROOT.parent / "shared" / "data" / "pools"


def cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = sorted({f for f in ("avx2", "avx512_bf16", "avx512_vnni", "amx_bf16") if f" {f}" in info})
    return f"{name}, {os.cpu_count()} cores, {' '.join(flags) or 'no AVX-512'}"


def build_pool(work: Path, seed: int) -> Path:
    rows = []
    for name in ("dolly_2k.alpaca.json", "alpaca_2k.alpaca.json"):
        path = POOLS / name
        if not path.is_file():
            sys.exit(f"needs ../shared/data/pools/{name}")
        source = name.split("_")[0]
        rows += [{**r, "source": source} for r in json.loads(path.read_text())]
    order = np.random.default_rng(seed).permutation(len(rows))
    pool = work / "pool.json"
    pool.write_text(json.dumps([rows[i] for i in order], ensure_ascii=False))
    return pool


def scores_for(pool: Path, path: Path, model: str, examples) -> tuple[dict[str, float], str]:
    from scar_core.validate import read_scores

    if path.is_file():
        scores = read_scores(path)
        missing = sum(ex.id not in scores for ex in examples)
        if not missing:
            return scores, f"reused {path}"
        print(f"{path} lacks {missing} of the pool's pairs: scoring again", flush=True)
    cmd = [sys.executable, "-m", "scar_core", "score", str(pool), "--out", str(path), "--model", model]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return read_scores(path), f"scored with --model {model}"


def cut(pool: Path, scores: dict[str, float], ratio: float, model: str, out: Path):
    """rank's steps on cached scores: load, clean (rank's defaults), select, manifest, export."""
    from scar_core.clean import clean
    from scar_core.device import resolve, precision_name
    from scar_core.export import describe_input, describe_ranker, export, file_sha256, manifest
    from scar_core.load import load
    from scar_core.ranker import checkpoint_hashes, checkpoint_location
    from scar_core.select import select

    result = load(pool)
    examples = result.examples
    report = clean(examples)
    score = np.array([scores[ex.id] for ex in examples], dtype=np.float64)
    score[~np.isin(np.arange(len(examples)), report.rows("candidates"))] = np.nan  # rank never scores these
    chosen = select(score, "ratio", ratio, clusters=report.cluster_ids, left_out_by=report.left_out_by)
    kept = [examples[i] for i in chosen.kept]
    weights, identity, config = checkpoint_hashes(model)
    device, dtype = resolve("auto", "auto")
    info = manifest(kept, "alpaca", False,
                    inputs=[describe_input(str(pool), file_sha256(pool), result.format, result.rows,
                                           len(examples), len(result.rejected))],
                    ranker=describe_ranker(checkpoint_location(model)[1], str(config.get("encoder")), weights, identity),
                    device=str(device), precision=precision_name(dtype), cleaning=report.summary(),
                    scope={"sample": False, "rows": len(examples), "of": len(examples)}, selection=chosen.params())
    written = export(out, kept, "alpaca", None, info)
    sources = {}
    for ex in kept:
        sources[ex.source] = sources.get(ex.source, 0) + 1
    return written, len(examples), chosen.eligible, sources


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(ROOT / "bench" / "out" / "validate"), help="folder for the pool, scores, cut, results")
    p.add_argument("--model", default="default", help="ranker for the scores")
    p.add_argument("--scores", help="scores file to reuse (or write) for the pool (default WORK/scores.jsonl)")
    p.add_argument("--ratio", type=float, default=0.1)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps for the cut")
    budget.add_argument("--epochs", type=float, default=1.0, help="passes over the cut (default 1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--eval-rows", type=int, default=100, help="AlpacaEval prompts, a seeded sample of the 805")
    p.add_argument("--threads", type=int, help="torch threads for validate (OMP_NUM_THREADS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-url", help="the judge: an OpenAI-compatible server up to /v1 (none: no win rate)")
    p.add_argument("--judge-model", help="the judge: the model name the server knows")
    p.add_argument("--judge-rows", type=int, default=100, help="eval prompts each tuned model answers for the judge")
    p.add_argument("--gen-tokens", type=int, default=256, help="longest answer for the judge, in tokens")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from scar_core.load import load

    start = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu()}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    t = time.perf_counter()
    pool = build_pool(work, args.seed)
    examples = load(pool).examples
    print(f"pool: {pool} ({len(examples)} pairs: Dolly 1,909 + Alpaca 2,000, seeded mix) "
          f"[{time.perf_counter() - t:.0f} s]", flush=True)
    t = time.perf_counter()
    scores, how = scores_for(pool, Path(args.scores) if args.scores else work / "scores.jsonl", args.model, examples)
    print(f"scores: {how} [{time.perf_counter() - t:.0f} s]", flush=True)
    t = time.perf_counter()
    written, n, eligible, sources = cut(pool, scores, args.ratio, args.model, work / "SELECTED.jsonl")
    print(f"cut: {written.manifest['rows']} of {eligible} eligible pairs (ratio {args.ratio}, of {n}); by source "
          f"{sources}; {written.path} [{time.perf_counter() - t:.0f} s]", flush=True)
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, "-m", "scar_core", "validate", str(written.manifest_path),
           "--eval", str(POOLS / "alpacaeval_805_gpt4.json"), "--eval-rows", str(args.eval_rows),
           *(["--steps", str(args.steps)] if args.steps else ["--epochs", str(args.epochs)]),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--lora-r", str(args.lora_r), "--max-tokens", str(args.max_tokens), "--seed", str(args.seed),
           *(["--base-url", args.base_url, "--judge-model", args.judge_model, "--judge-rows", str(args.judge_rows),
              "--gen-tokens", str(args.gen_tokens)] if args.judge_model else [])]
    print("$ " + " ".join(cmd), flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    print(proc.stdout, flush=True)
    if proc.returncode:
        sys.exit(f"validate failed ({proc.returncode})")
    print(f"validate: [{time.perf_counter() - t:.0f} s]; JSON: {written.path}.validate.json")
    print(f"whole bench: {time.perf_counter() - start:.0f} s wall; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
