"""Speed and accuracy of CPU runtimes for the default ranker's encoder, each in a process of its own
(issue 29: could another runtime make the encoder as fast without bf16 as torch is with it?): torch
fp32 and bf16, ONNX Runtime fp32 (the int8 engine's OnnxEmbed: one text per call at its own length;
`-spin` lets its idle threads spin) and int8 (the same graph with per-channel int8 weights), and
OpenVINO fp32 and bf16 (StyleRanker.embed converted with openvino.convert_model). torch and OpenVINO
encode with the scoring step's batching (scar_core.score.BatchEncoder: one padded width per batch,
blocks of 8 rows).

    python bench/encoder_engines.py --runtimes torch-fp32 torch-bf16 onnxruntime-fp32 [--per-pool 32]

OpenVINO is not a project dependency; install it without its telemetry package (which reports usage
to Intel on import) in a side venv that sees the project's packages (bench/lm_engines.py says how):

    /tmp/ortvenv/bin/pip install --no-deps openvino==2026.4.1
    /tmp/ortvenv/bin/python bench/encoder_engines.py [--per-pool 32] [--passes 3]

Why one process per runtime: runtimes interleaved in one process slow each other down (their thread
pools stay busy between calls); measured so, torch's encoder ran several times slower beside OpenVINO
than alone, which made OpenVINO look 2.2x faster than torch when alone it is slower.
Texts: the responses and instructions of --per-pool pairs from ShareGPT and from Dolly (seed 0).
Each process encodes them --passes times after loading; the best pass counts. Accuracy: the largest
|difference| to torch fp32 and the smallest cosine, for the pooled vectors and the max-pooled states.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RUNTIMES = ("torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16", "onnxruntime-fp32", "onnxruntime-int8",
            "onnxruntime-fp32-spin")


def openvino_embed(ranker, precision: str, folder: Path):
    """StyleRanker.embed compiled by OpenVINO on the CPU, fed blocks of 8 rows like torch's linear layers."""
    import openvino as ov

    from scar_core.engine import EmbedGraph
    from scar_core.lm import ROW_BLOCK

    ids = torch.ones(ROW_BLOCK, 16, dtype=torch.long)
    mask = (torch.arange(16) < torch.arange(2, 2 + 2 * ROW_BLOCK, 2)[:, None]).long()  # padded, as scored
    with torch.inference_mode():
        model = ov.convert_model(EmbedGraph(ranker).eval(), example_input=(ids, mask),
                                 input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)])
    ov.save_model(model, str(folder / "embed.xml"), compress_to_fp16=False)
    core = ov.Core()
    request = core.compile_model(core.read_model(str(folder / "embed.xml")), "CPU", {
        "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]}).create_infer_request()

    def embed(input_ids: np.ndarray, attention_mask: np.ndarray):
        rows, extra = len(input_ids), -len(input_ids) % ROW_BLOCK
        filler = np.zeros((extra, input_ids.shape[1]), np.int64)
        filler_mask = filler.copy()
        filler_mask[:, 0] = 1
        out = request.infer({"input_ids": np.concatenate([input_ids, filler]),
                             "attention_mask": np.concatenate([attention_mask, filler_mask])})
        return out[0][:rows], out[1][:rows]
    return embed


def onnxruntime_embed(ranker, precision: str, folder: Path, spin: bool):
    """The int8 engine's OnnxEmbed (fp32), or the same graph with per-channel int8 weights and activations
    quantised per call (one text per call, so a text's vectors still never depend on its batch)."""
    from scar_core.engine import OnnxEmbed, onnx_embed_file

    graph = None
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        graph = folder / "embed-int8.onnx"
        quantize_dynamic(str(onnx_embed_file(ranker)), str(graph), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8)
    return OnnxEmbed(ranker, graph, spin)


def encode_with(runtime: str, per_pool: int, passes: int, out: Path) -> None:
    """One runtime in this process: the best pass's seconds and the vectors, into `out` (.npz)."""
    from bench.lm_engines import sample_pairs
    from scar_core.ranker import load_ranker
    from scar_core.score import BatchEncoder

    kind, precision, *spin = runtime.split("-")
    ranker = load_ranker("default").eval()
    instructions, responses = sample_pairs(per_pool)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "torch":
            encoder = BatchEncoder(ranker, torch.device("cpu"), {"fp32": torch.float32, "bf16": torch.bfloat16}[precision])
        elif kind == "onnxruntime":
            encoder = BatchEncoder(ranker, torch.device("cpu"), torch.float32,
                                   embed=onnxruntime_embed(ranker, precision, Path(tmp), bool(spin)))
        else:
            embed = openvino_embed(ranker, precision, Path(tmp))
            # the scoring step's batches, with OpenVINO where torch's StyleRanker.embed would run
            ranker.embed = lambda ids, mask: tuple(map(torch.from_numpy, embed(ids.numpy(), mask.numpy())))
            encoder = BatchEncoder(ranker, torch.device("cpu"), torch.float32)
        ids, _ = encoder.tokenize(responses + instructions, left=False)
        best = float("inf")
        for _ in range(passes):
            start = time.perf_counter()
            pooled, maxed = encoder.encode(ids, want_max=True)
            best = min(best, time.perf_counter() - start)
    tokens = sum(encoder.width(len(x)) for x in ids)
    np.savez(out, pooled=pooled, maxed=maxed, seconds=best, tokens=tokens, texts=len(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    ap.add_argument("--per-pool", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=RUNTIMES, help=argparse.SUPPRESS)  # the child process's runtime
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        return encode_with(args.one, args.per_pool, args.passes, args.out)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ["torch-fp32", *[r for r in args.runtimes if r != "torch-fp32"]]:
            out = Path(tmp) / f"{runtime}.npz"
            subprocess.run([sys.executable, __file__, "--one", runtime, "--out", str(out), "--per-pool",
                            str(args.per_pool), "--passes", str(args.passes), "--threads", str(args.threads)],
                           check=True, stderr=subprocess.DEVNULL)
            results[runtime] = dict(np.load(out))
    base = results["torch-fp32"]
    print(f"{int(base['texts'])} texts, {int(base['tokens'])} padded tokens, {args.threads} threads, best of "
          f"{args.passes} passes, one process per runtime")

    def cosine(a, b) -> float:
        return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
    print("| runtime | tokens/s | x torch fp32 | max abs diff, pooled | min cosine, pooled | "
          "max abs diff, max-pooled | min cosine, max-pooled |")
    print("|---|---|---|---|---|---|---|")
    for runtime, r in results.items():
        print(f"| {runtime} | {r['tokens'] / r['seconds']:.0f} | {base['seconds'] / r['seconds']:.2f} | "
              f"{np.abs(r['pooled'] - base['pooled']).max():.1e} | {cosine(r['pooled'], base['pooled']):.6f} | "
              f"{np.abs(r['maxed'] - base['maxed']).max():.1e} | {cosine(r['maxed'], base['maxed']):.6f} |")
    print(json.dumps({"load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
