"""Scoring throughput of this project's engine against scar-tool's own `score_pairs`.

    python bench/throughput.py [--pool FILE ...] [--limit N] [--device cpu|cuda|auto] [--threads T]
    python bench/throughput.py --model default [default:lm=128 default:nolm ...] [--limit N]

Both sides score the same pairs with the same weights: one scar-tool checkpoint (bundled MiniLM,
seeded head) is written by scar-tool and loaded by each. scar-tool scores in input order in
batches of 32 (its defaults); this engine scores in fp32, then in reduced precision (bf16 on CPUs
with AVX-512-BF16 or AMX, bf16/fp16 on GPUs). The pool is a deterministic sample (--limit, --seed)
of the given files: the whole default pools (22.7k pairs) take scar-tool over an hour on 2 cores.
The methods take turns segment by segment, so load from other processes falls on all alike; on a
busy shared machine use --threads 1 (two OpenMP threads stall whenever one is descheduled).

Prints pairs/s (wall-clock and per CPU-second), the ratio, score agreement, model FLOPs per pair
and the fraction of a measured matmul peak; on CUDA also peak memory, utilisation and the largest
batch of 512-token texts that fits. The last line is one JSON object with the figures.

With --model, the rankers named are timed end to end instead (score_pairs, LM term included,
precision auto, plus fp32 for the first where auto is not fp32) against scar-tool's score_pairs
on the seeded scar-tool checkpoint, all interleaved on the same sample. A model spec is a
checkpoint (`default` or a folder) with optional `:`-separated changes to its LM term, for speed
comparisons only (scores of a changed term are not standardised anew): `lm=N` (LM token limit),
`int8` (the LM's linear layers dynamically quantised), `autocast` (the LM's fp32 weights cast
under bf16 autocast with fused attention, as this project ran it before holding bf16 weights on CPU),
`nolm` (no LM term: encoder and head only), `engine=int8|torch` (scar_core.engine; the LM term through
CTranslate2 in int8), `precision=fp32|bf16` (instead of auto). With --model, Spearman is also given to
`default` in fp32 on torch, the reference every engine and precision is held to (added when missing).

--startup times whole processes instead: `score` of one pair, twice per engine (`int8:fp32`: an engine at
a precision other than auto; the first may convert and cache model files; the second is a warm start): seconds from spawning the
process to the engine's first scores, and to the process's end.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from scar_core.encoders import bundled_encoder_path  # noqa: E402
from scar_core.lm import load_language_model  # noqa: E402
from scar_core.load import load  # noqa: E402
from scar_core.ranker import load_ranker  # noqa: E402
from scar_core.device import resolve_device, resolve_precision
from scar_core.engine import local_engine  # noqa: E402
from scar_core.score import score_pairs  # noqa: E402

POOLS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pools"
DEFAULT_POOLS = [POOLS / "sharegpt_6k.sharegpt.jsonl", POOLS / "dolly_2k.alpaca.json"]
REF_BATCH = 32
RELEASED = "scar-tool, released size"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_pool_options(ap)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    ap.add_argument("--segments", type=int, default=4,
                    help="the methods take turns on this many segments of the pool (fair under shared load)")
    ap.add_argument("--skip-reference", action="store_true", help="time only this engine")
    ap.add_argument("--released-size", action="store_true",
                    help="with --model: also time scar-tool on an encoder of the released SCAR rankers' size "
                         "(BERT-base shape, random weights; several times slower than the MiniLM one)")
    ap.add_argument("--model", nargs="+", metavar="SPEC",
                    help="time these rankers end to end against scar-tool (see above), e.g. default default:lm=128")
    ap.add_argument("--startup", nargs="*", metavar="ENGINE",
                    help="time warm starts of `score` of one pair with these engines (default: torch int8)")
    args = ap.parse_args()
    if args.startup is not None:
        return startup(args.startup or ["torch", "int8"], args.device)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    instructions, responses = sample_pool(args.pool, args.limit, args.seed)
    n = len(responses)
    print(f"pool: {n} pairs from {', '.join(p.name for p in args.pool)} (seed {args.seed})")
    print(f"machine: {machine(device)}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {load_average()}")

    if args.model:
        return compare_models(args, device, instructions, responses)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_scar_tool_checkpoint(Path(tmp), args.seed)
        ours_model = load_ranker(checkpoint, encoder="minilm")
        tokens = token_counts(ours_model, instructions, responses)
        flops = pair_flops(ours_model.encoder.config, tokens)
        print(f"tokens per pair (after truncation to 512): instruction mean {tokens[0].mean():.0f}, "
              f"response mean {tokens[1].mean():.0f}; {sum(t.sum() for t in tokens) / n:.0f} total")
        print(f"model FLOPs per pair: {flops / 1e9:.2f} GFLOP (encoder on both texts, unpadded)")
        methods = {} if args.skip_reference else {"ref": reference_scorer(checkpoint, device)}
    lowp = resolve_precision("auto", device)
    lowp_name = {torch.float32: None, torch.bfloat16: "bf16", torch.float16: "fp16"}[lowp]
    methods["fp32"] = engine_scorer(ours_model, device, "fp32")
    if lowp_name:
        methods[lowp_name] = engine_scorer(ours_model, device, lowp_name)
    runs = time_interleaved(methods, instructions, responses, device, args.segments)

    result: dict = {"pairs": n, "device": str(device), "threads": torch.get_num_threads(),
                    "gflop_per_pair": round(flops / 1e9, 3)}
    fp32 = runs["fp32"]
    result["ours_pairs_per_s"] = round(fp32.rate, 2)
    if "ref" in runs:
        ref = runs["ref"]
        diff = float(np.abs(fp32.scores - ref.scores).max())
        result.update(ref_pairs_per_s=round(ref.rate, 2), ratio=round(fp32.rate / ref.rate, 2),
                      max_abs_diff_fp32=diff, spearman_fp32=spearman(fp32.scores, ref.scores),
                      ratio_cpu_time=round(ref.cpu_s / fp32.cpu_s, 2))
        print(f"ratio (this engine fp32 / scar-tool): {fp32.rate / ref.rate:.2f}x wall-clock, "
              f"{ref.cpu_s / fp32.cpu_s:.2f}x in process CPU time; max |score difference| {diff:.2e}")
    if lowp_name:
        low = runs[lowp_name]
        rho = spearman(low.scores, fp32.scores)
        result.update(lowp=lowp_name, lowp_pairs_per_s=round(low.rate, 2), spearman_lowp=rho,
                      max_abs_diff_lowp=float(np.abs(low.scores - fp32.scores).max()),
                      lowp_speedup_over_fp32=round(low.rate / fp32.rate, 2))
        if "ref" in runs:
            result["ratio_lowp"] = round(low.rate / runs["ref"].rate, 2)
        print(f"{lowp_name}: {low.rate / fp32.rate:.2f}x the fp32 path; Spearman vs fp32 {rho:.5f}")
    else:
        result["spearman_lowp"] = None
        print("reduced precision: not supported natively on this device, skipped")

    peaks = measure_peak(device)
    result["peak_gflops"] = {k: round(v / 1e9, 1) for k, v in peaks.items()}
    for name, run in runs.items():
        dtype = "fp32" if name == "ref" else name
        frac = flops * run.rate / peaks[dtype]
        result[f"peak_fraction_{name}"] = round(frac, 3)
        line = (f"{name}: {flops * run.rate / 1e9:.1f} GFLOP/s = {100 * frac:.1f}% of the {dtype} peak "
                f"{peaks[dtype] / 1e9:.0f} GFLOP/s")
        if device.type == "cpu":  # per CPU-second: what a core achieves while it runs, robust to shared load
            per_core = flops * run.pairs / run.cpu_s / (peaks[dtype] / torch.get_num_threads())
            result[f"core_fraction_{name}"] = round(per_core, 3)
            line += f"; {100 * per_core:.1f}% of one core's peak per CPU-second"
        print(line)
    if device.type == "cuda":
        gpu = {name: {k: v for k, v in run.gpu.items() if k != "samples"} for name, run in runs.items()}
        gpu["max_batch_512_tokens"] = largest_batch(ours_model, device)
        result["gpu"] = gpu
        print(f"GPU: {gpu}")
    result["load_average"] = load_average()
    print(json.dumps(result))


def compare_models(args, device: torch.device, instructions: list[str], responses: list[str]) -> None:
    """The named rankers end to end (precision auto; fp32 too for the first where auto differs)
    against scar-tool's score_pairs, interleaved; pairs/s, ratios and Spearman figures."""
    lowp = resolve_precision("auto", device)
    auto_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[lowp]
    print(f"precision auto = {auto_name} on this device")
    methods = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_reference:
            methods["scar-tool"] = reference_scorer(write_scar_tool_checkpoint(Path(tmp) / "minilm", args.seed), device)
        if args.released_size:
            methods[RELEASED] = reference_scorer(write_scar_tool_checkpoint(Path(tmp) / "base", args.seed, True), device)
    loaded: dict[str, object] = {}
    names = {spec: f"{spec} ({spec_precision(spec, auto_name)})" for spec in args.model}
    for spec, name in names.items():
        methods[name] = model_scorer(spec, device, auto_name, loaded)
    plain_fp32 = [s for s in args.model if s == "default:precision=fp32" or (s == "default" and auto_name == "fp32")]
    fp32_name = names[plain_fp32[0]] if plain_fp32 else "default:precision=fp32 (fp32)"
    if not plain_fp32:
        methods[fp32_name] = model_scorer("default:precision=fp32", device, auto_name, loaded)
    runs = time_interleaved(methods, instructions, responses, device, args.segments)
    result: dict = {"pairs": len(responses), "device": str(device), "threads": torch.get_num_threads(),
                    "precision_auto": auto_name, "pairs_per_s": {k: round(r.rate, 3) for k, r in runs.items()}}
    first = runs[names[args.model[0]]]
    if "scar-tool" in runs:
        ref = runs["scar-tool"]
        result["ratio_to_scar_tool"] = {k: round(r.rate / ref.rate, 3) for k, r in runs.items() if k != "scar-tool"}
        result["cpu_time_ratio_to_scar_tool"] = {k: round(ref.cpu_s / r.cpu_s, 3)
                                                 for k, r in runs.items() if k != "scar-tool"}
    if RELEASED in runs:
        result["ratio_to_released_size"] = {k: round(r.rate / runs[RELEASED].rate, 3) for k, r in runs.items()
                                            if not k.startswith("scar-tool")}
    result["spearman_to_first"] = {k: spearman(r.scores, first.scores) for k, r in runs.items()
                                   if not k.startswith("scar-tool") and r is not first}
    result["spearman_to_fp32_torch"] = {k: spearman(r.scores, runs[fp32_name].scores) for k, r in runs.items()
                                        if not k.startswith("scar-tool") and k != fp32_name}
    print("| ranker | pairs/s | x scar-tool (wall) | x scar-tool (CPU time) | x scar-tool released size (wall) "
          "| Spearman to the first | Spearman to default fp32 torch |")
    print("|---|---|---|---|---|---|---|")

    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for name, run in runs.items():
        print(f"| {name} | {run.rate:.2f} | {cell(result.get('ratio_to_scar_tool', {}).get(name), 2)} | "
              f"{cell(result.get('cpu_time_ratio_to_scar_tool', {}).get(name), 2)} | "
              f"{cell(result.get('ratio_to_released_size', {}).get(name), 2)} | "
              f"{cell(result['spearman_to_first'].get(name), 5)} | "
              f"{cell(result['spearman_to_fp32_torch'].get(name), 5)} |")
    result["load_average"] = load_average()
    print(json.dumps(result))


def model_scorer(spec: str, device: torch.device, precision: str, loaded: dict):
    """A scorer for `checkpoint[:change...]` (see the module doc); rankers are shared per checkpoint
    in `loaded`, each call setting its own LM term."""
    from dataclasses import replace

    path, *changes = spec.split(":")
    precision = spec_precision(spec, precision)
    if (path, precision) not in loaded:  # one ranker per precision: its LM is loaded once per precision
        loaded[path, precision] = load_ranker(path)
    ranker = loaded[path, precision]
    base = ranker.lm_term
    term, swap, engine_name = base, None, "torch"
    for change in changes:
        key, _, value = change.partition("=")
        if key == "nolm":
            term = None
        elif key == "lm":
            term = replace(term, max_tokens=int(value))
        elif key in ("int8", "autocast"):
            swap = key
        elif key == "engine":
            engine_name = value
        elif key != "precision":
            sys.exit(f"unknown model change '{change}' in '{spec}'")
    engine = local_engine(ranker, engine_name, str(device), precision)

    def score(ins, res):
        ranker.lm_term = term
        lm = swapped_lm(ranker, device, swap) if swap and term is not None else None
        saved = ranker._lm
        try:
            if lm is not None:
                ranker._lm = lm
            return engine.score(ins, res).score
        finally:
            ranker.lm_term = base
            if lm is not None:
                ranker._lm = saved
    return score


def spec_precision(spec: str, auto_name: str) -> str:
    """The precision a model spec names (`precision=...`), else the device's auto precision."""
    named = [c.partition("=")[2] for c in spec.split(":")[1:] if c.startswith("precision=")]
    return named[0] if named else auto_name


FIRST_PAIR = """
import sys, time
import scar_core.engine as engine


def first(cls):
    inner = cls.iter_scores

    def timed(self, *args, **kwargs):
        for chunk in inner(self, *args, **kwargs):
            if not getattr(engine, "first_pair_at", None):
                engine.first_pair_at = time.time()
                print(f"FIRST_PAIR_AT {engine.first_pair_at}", file=sys.stderr, flush=True)
            yield chunk
    cls.iter_scores = timed


for cls in (engine.TorchEngine, engine.Int8Engine):
    first(cls)
from scar_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def startup(engines: list[str], device: str) -> None:
    """Whole `score` processes on one pair, twice per engine: the first may convert and cache model
    files, the second is a warm start (the issue's goal: under 5 s to the scored pair). The child
    notes the wall-clock time at which the engine yields its first scores; the process runs the CLI
    exactly as `python -m scar_core score` does, with that one wrapper around the engines."""
    import resource
    import subprocess

    def child_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        pair = Path(tmp) / "one.jsonl"
        pair.write_text(json.dumps({"instruction": "Name a colour.", "output": "Blue is a colour."}) + "\n")
        result = {}
        for engine in engines:  # "int8" or "int8:fp32": an engine, and a precision other than auto
            name, _, precision = engine.partition(":")
            runs = []
            for _ in range(2):
                start, wall_start, cpu_start = time.perf_counter(), time.time(), child_cpu()
                done = subprocess.run([sys.executable, "-c", FIRST_PAIR, "score", str(pair),
                                       "--out", str(Path(tmp) / "o.jsonl"), "--engine", name, "--device", device,
                                       "--dedup", "none", "--lang", "any", *(["--precision", precision] if precision else [])],
                                      check=True, capture_output=True, text=True, env={**os.environ, "SCAR_DB_URL": ""},
                                      cwd=Path(__file__).resolve().parent.parent)
                marks = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("FIRST_PAIR_AT ")]
                runs.append({"first_pair_s": round(float(marks[0]) - wall_start, 2),
                             "process_s": round(time.perf_counter() - start, 2),
                             "cpu_s": round(child_cpu() - cpu_start, 2)})
            result[engine] = {"first": runs[0], "warm": runs[1]}
            print(f"start-up, --engine {engine}: first process {runs[0]['first_pair_s']:.1f} s to the scored pair "
                  f"({runs[0]['process_s']:.1f} s whole process); warm start {runs[1]['first_pair_s']:.1f} s to the "
                  f"scored pair ({runs[1]['process_s']:.1f} s whole process, {runs[1]['cpu_s']:.1f} CPU-s)   "
                  f"[load {load_average()}]", flush=True)
    print(json.dumps({"startup": result, "load_average": load_average()}))


_SWAPPED: dict = {}


def swapped_lm(ranker, device: torch.device, kind: str):
    """The ranker's LM loaded in fp32, built once per kind: "int8" quantises its linear layers
    dynamically; "autocast" runs it as loaded under bf16 autocast (its dtype says bf16)."""
    from dataclasses import replace

    if kind not in _SWAPPED:
        lm = load_language_model(ranker.lm_term.lm, str(device), "fp32")
        if kind == "int8":
            model = torch.ao.quantization.quantize_dynamic(lm.model, {torch.nn.Linear}, dtype=torch.qint8)
            _SWAPPED[kind] = replace(lm, model=model)
        else:
            _SWAPPED[kind] = replace(lm, dtype=torch.bfloat16)
    return _SWAPPED[kind]


def add_pool_options(ap: argparse.ArgumentParser) -> None:
    """--pool, --limit and --seed: the seeded sample every speed benchmark here scores."""
    ap.add_argument("--pool", nargs="+", type=Path, default=DEFAULT_POOLS, help="pool files (any loadable format)")
    ap.add_argument("--limit", type=int, default=480,
                    help="pairs to sample from the pools (default 480: about 4 minutes on an idle 2-core machine); 0 = all")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (and of throughput's ranker head)")


def sample_pool(paths: list[Path], limit: int, seed: int) -> tuple[list[str], list[str]]:
    """Instructions (with conversation context) and responses of a seeded sample, in file order."""
    examples = []
    for path in paths:
        loaded = load(path, lenient=True)
        examples += loaded.examples
        print(f"{path.name}: {len(loaded.examples)} pairs, {len(loaded.rejected)} rejected rows")
    if limit and limit < len(examples):
        keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
        examples = [examples[i] for i in keep]
    if len(examples) % REF_BATCH == 1:  # scar-tool's score_pairs fails on a final batch of one pair
        examples = examples[:-1]
    return [e.ranker_instruction() for e in examples], [e.response for e in examples]


def write_scar_tool_checkpoint(directory: Path, seed: int, released_size: bool = False) -> Path:
    """A scar-tool StyleRanker (seeded head) saved with scar-tool's own save_pretrained: on the bundled
    MiniLM, or (`released_size`) on an encoder of the released SCAR rankers' size (BERT-base shape:
    hidden 768, 12 layers, 12 heads; random weights built from a config, MiniLM's vocabulary), since
    those checkpoints cannot be downloaded here and speed does not depend on the weights."""
    from style_ranker.ranker.config import StyleRankerConfig
    from style_ranker.ranker.model import StyleRanker
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    encoder, hidden = str(bundled_encoder_path()), 384
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    if released_size:
        hidden, encoder = 768, str(directory / "encoder")
        BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=12,
                             num_attention_heads=12, intermediate_size=3072)).save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
    StyleRanker(StyleRankerConfig(encoder_name=encoder, hidden_dim=hidden, linear_dim=hidden)).save_pretrained(
        str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def reference_scorer(checkpoint: Path, device: torch.device):
    """scar-tool's own load_ranker + score_pairs (batch 32, input order), as its users run them."""
    from style_ranker.rank import load_ranker as tool_load
    from style_ranker.rank import score_pairs as tool_score

    model, tokenizer = tool_load(str(checkpoint), device=str(device))
    return lambda ins, res: np.asarray(
        tool_score(model, tokenizer, ins, res, batch_size=REF_BATCH, device=str(device)), dtype=np.float32)


def engine_scorer(ranker, device: torch.device, precision: str):
    return lambda ins, res: score_pairs(ranker, ins, res, device=str(device), precision=precision).score


@dataclass
class Run:
    scores: np.ndarray
    wall_s: float = 0.0
    cpu_s: float = 0.0
    pairs: int = 0
    gpu: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.pairs / self.wall_s


def time_interleaved(methods: dict, instructions: list[str], responses: list[str], device: torch.device,
                     segments: int) -> dict[str, Run]:
    """Score the pool segment by segment, each method in turn on every segment, so that load from
    other processes on a shared machine falls on all methods alike. Wall and process CPU time."""
    n = len(responses)
    step = -(-n // max(1, segments) // REF_BATCH) * REF_BATCH  # whole scar-tool batches per segment
    runs = {name: Run(np.empty(n, np.float32)) for name in methods}
    for name, scorer in methods.items():
        scorer(instructions[:2], responses[:2])  # warm-up: kernels, caches, lazy imports
    for lo in range(0, n, step):
        ins, res = instructions[lo:lo + step], responses[lo:lo + step]
        for name, scorer in methods.items():
            sync(device)
            with GpuSampler(device) as sampler:
                wall, cpu = time.perf_counter(), time.process_time()
                runs[name].scores[lo:lo + len(res)] = scorer(ins, res)
                sync(device)
                runs[name].wall_s += time.perf_counter() - wall
                runs[name].cpu_s += time.process_time() - cpu
            runs[name].pairs += len(res)
            runs[name].gpu = sampler.figures(runs[name].gpu)
        print(f"  pairs {lo}-{lo + len(res)}: " + ", ".join(
            f"{k} {r.rate:.2f} pairs/s" for k, r in runs.items()) + f"   [load {load_average()}]", flush=True)
    for name, run in runs.items():
        print(f"{name}: {run.rate:.2f} pairs/s wall-clock, {run.pairs / run.cpu_s:.2f} pairs per CPU-second")
    return runs


def token_counts(ranker, instructions: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
    tok, limit = ranker.tokenizer, ranker.max_length
    return tuple(np.array([len(x) for x in tok(texts, truncation=True, max_length=limit)["input_ids"]])
                 for texts in (instructions, responses))


def pair_flops(config, tokens: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean forward FLOPs per pair of a BERT-style encoder over the real (unpadded) lengths.

    Per layer and text of s tokens: projections 8*s*H^2, feed-forward 4*s*H*I, attention 4*s^2*H;
    plus the pooler (2*H^2). The ranker head (a few 2H x L matmuls) is negligible and left out.
    """
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    s = np.concatenate(tokens).astype(np.float64)
    per_text = layers * (s * (8 * h * h + 4 * h * inter) + 4 * s * s * h) + 2 * h * h
    return float(per_text.sum() / len(tokens[0]))


def measure_peak(device: torch.device) -> dict[str, float]:
    """Peak FLOP/s per dtype from the best of 5 large square matmuls: an achievable peak, not the
    datasheet one. On CPU one thread is timed in process CPU time (other processes on a shared
    machine do not distort it) and multiplied by the thread count; on GPU, wall-clock time."""
    dtypes = {"fp32": torch.float32}
    low = resolve_precision("auto", device)
    if low != torch.float32:
        dtypes[{torch.bfloat16: "bf16", torch.float16: "fp16"}[low]] = low
    n = 8192 if device.type == "cuda" else 2048
    threads = torch.get_num_threads()
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    scale = 1 if device.type == "cuda" else threads
    if device.type == "cpu":
        torch.set_num_threads(1)
    peaks = {}
    for name, dtype in dtypes.items():
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = float("inf")
        for _ in range(5):
            sync(device)
            start = clock()
            a @ b
            sync(device)
            best = min(best, clock() - start)
        peaks[name] = scale * 2 * n ** 3 / best
    torch.set_num_threads(threads)
    how = "wall-clock" if device.type == "cuda" else f"1 thread in CPU time x {threads} threads"
    print(f"peak: best of 5 {n}x{n} matmuls, {how}: " +
          ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    return peaks


def largest_batch(ranker, device: torch.device) -> int:
    """Largest batch of 512-token texts one encoder forward fits in GPU memory (doubling search)."""
    size, fits = 32, 0
    while size <= 65536:
        ids = torch.ones((size, ranker.max_length), dtype=torch.long, device=device)
        try:
            with torch.inference_mode(), torch.autocast("cuda", dtype=resolve_precision("auto", device)):
                ranker.embed(ids, torch.ones_like(ids))
            fits, size = size, size * 2
        except torch.OutOfMemoryError:
            break
        finally:
            del ids
            torch.cuda.empty_cache()
    return fits


class GpuSampler:
    """Samples GPU utilisation (percent) every 0.2 s while a run is timed; a no-op on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.stop = device, [], threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.stop.set()
            self.thread.join()

    def _sample(self):
        while not self.stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # needs pynvml / NVML; report what we have
                return

    def figures(self, before: dict) -> dict:
        """These figures merged with those of earlier segments (`before`)."""
        if self.device.type != "cuda":
            return {}
        samples = before.get("samples", []) + self.samples
        memory = max(before.get("peak_memory_gib", 0.0), torch.cuda.max_memory_allocated(self.device) / 2 ** 30)
        return {"samples": samples, "peak_memory_gib": round(memory, 2),
                "util_mean_pct": round(float(np.mean(samples)), 1) if samples else None,
                "util_max_pct": max(samples) if samples else None}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "CPU"
    return f"{model}, {os.cpu_count()} cores"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
