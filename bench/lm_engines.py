"""Speed and accuracy of CPU runtimes for the default ranker's LM term (issue 29: the int8 CPU engine
chosen by measurement among maintained engines): torch fp32 and bf16, CTranslate2 int8 (the int8
engine), ONNX Runtime fp32 and int8 (and OpenVINO where installed), on the same 96 pairs, with the
same encoding, positions and term settings (scar_core.lm.response_nll with each runtime's
LanguageModel, as scar_core.engine's Int8LanguageModel does for CTranslate2).

ONNX Runtime and OpenVINO are not project dependencies; install them in a side venv that sees the
project's packages (never into the project's .venv):

    python3 -m venv /tmp/ortvenv
    .venv/bin/python -c "import site; print(site.getsitepackages()[0])" \\
        > /tmp/ortvenv/lib/python3.11/site-packages/project.pth
    /tmp/ortvenv/bin/pip install onnxruntime onnx onnx-ir  # tested: onnxruntime 1.32.0, onnx 1.23.2, onnx-ir 1.1.0
    /tmp/ortvenv/bin/pip install openvino nncf             # tested: openvino 2026.4.1, nncf 3.4.0
    /tmp/ortvenv/bin/python -c "import torch; print(torch.__version__)"   # still the project's torch

    cd /work/main && /tmp/ortvenv/bin/python bench/lm_engines.py [--runtimes ...] [--work /tmp/ort]

The exported and quantised ONNX files go to --work (default /tmp/ort), never the repository; their
one-off set-up seconds are recorded there and reported (the export is done once). Pairs: 48 from
ShareGPT and 48 from Dolly (../shared/data/pools), seed 0. Timing: 3 segments of 32 pairs, each
runtime takes its turn on each segment (so machine load affects all alike), after one warm-up call.
tokens/s counts each pair's prompt + response tokens (_Encoded.width). Accuracy: Spearman of the
NLLs to torch fp32 and the largest |difference| over the 96 pairs. Batch identity: the 96 pairs
scored in one call and in two halves (other batch compositions), compared bit for bit.
Runtimes interleaved in one process slow each other a little (torch fp32 read up to 9% slow beside
the others, models/default/README.md): bench/throughput.py, one process per method, decides.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scar_core.example import Example  # noqa: E402
from scar_core.lm import (LanguageModel, _encode, _padded, counted_positions, end_of_turn,  # noqa: E402
                          language_model_folder, load_language_model, response_nll)
from scar_core.load import load  # noqa: E402
from scar_core.ranker import load_ranker  # noqa: E402

POOLS = [ROOT.parent / "shared/data/pools/sharegpt_6k.sharegpt.jsonl",
         ROOT.parent / "shared/data/pools/dolly_2k.alpaca.json"]
THREADS = 2
ROW_BLOCK = 8  # the gathered (counted) rows go to the head in multiples of this, as scar_core.lm.row_blocks
ALL = ("torch-fp32", "torch-bf16", "ct2-int8", "ort-fp32", "ort-int8", "ort-int8-fp32head", "ort-nbits8",
       "ov-fp32", "ov-bf16", "ov-int8", "ov-int8-bf16", "ov-int8-g128")


def sample_pairs(per_pool: int = 48, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    instructions, responses = [], []
    for path in POOLS:
        examples = load(path, lenient=True).examples
        for i in np.sort(rng.choice(len(examples), per_pool, replace=False)):
            instructions.append(examples[i].ranker_instruction())
            responses.append(examples[i].response)
    return instructions, responses


class OrtLanguageModel(LanguageModel):
    """A causal LM exported to ONNX as one graph: (input_ids, attention_mask, rows, cols, targets) ->
    the NLL of targets at hidden[rows, cols] (the body over all positions, the head only where a counted
    token is predicted, as scar_core.lm._batch_nll)."""

    session: object = None

    def batch_nll(self, batch) -> np.ndarray:
        ids, mask = _padded(self, batch)
        out = np.full(len(batch), np.nan)
        r, c = counted_positions(batch)
        if not len(r):
            return out
        ids_np = ids.numpy()
        targets = ids_np[r, c + 1]
        n = len(r)
        extra = -n % ROW_BLOCK  # dummy rows so the head's GEMM sees a multiple of ROW_BLOCK rows
        rp, cp, tp = (np.concatenate([a, np.zeros(extra, np.int64)]) for a in (r, c, targets))
        token_nll = self.session.run(None, {"input_ids": ids_np, "attention_mask": mask.numpy(), "rows": rp,
                                            "cols": cp, "targets": tp})[0][:n]
        sums = np.zeros(len(batch))
        np.add.at(sums, r, token_nll.astype(np.float64))
        counts = np.bincount(r, minlength=len(batch))
        out[counts > 0] = sums[counts > 0] / counts[counts > 0]
        return out


class OvLanguageModel(OrtLanguageModel):
    """The same graph compiled by OpenVINO."""

    compiled: object = None

    def batch_nll(self, batch) -> np.ndarray:
        compiled = self.compiled

        class Session:
            @staticmethod
            def run(_, feeds):
                res = compiled(feeds)
                return [res[compiled.output(0)]]

        self.session = Session
        return super().batch_nll(batch)


class NLLGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.body, self.head = model.model, model.lm_head

    def forward(self, input_ids, attention_mask, rows, cols, targets):
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        logits = self.head(hidden[rows, cols])
        return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


def example_inputs():
    ids = torch.randint(0, 1000, (2, 32))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 20:] = 0
    return ids, mask, torch.tensor([0, 0, 1]), torch.tensor([3, 5, 7]), torch.tensor([1, 2, 3])


def fp32_graph() -> NLLGraph:
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(language_model_folder("smollm2"), dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    model.config.use_cache = False
    return NLLGraph(model).eval()


def setup_record(work: Path) -> dict:
    path = work / "setup.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_setup(work: Path, key: str, seconds: float) -> None:
    rec = setup_record(work)
    rec[key] = round(seconds, 1)
    (work / "setup.json").write_text(json.dumps(rec))


def onnx_file(work: Path, kind: str) -> Path:
    """The ONNX file of `kind` ("fp32", "int8", "int8-fp32head", "nbits8"), made once under `work`."""
    work.mkdir(parents=True, exist_ok=True)
    fp32 = work / "smollm2-nll-fp32.onnx"
    if not fp32.exists():
        start = time.perf_counter()
        torch.onnx.export(fp32_graph(), example_inputs(), str(fp32), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "rows", "cols", "targets"],
                          output_names=["token_nll"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "rows": {0: "n"}, "cols": {0: "n"}, "targets": {0: "n"},
                                        "token_nll": {0: "n"}})
        record_setup(work, "export-fp32", time.perf_counter() - start)
    if kind == "fp32":
        return fp32
    out = work / f"smollm2-nll-{kind}.onnx"
    if out.exists():
        return out
    start = time.perf_counter()
    if kind in ("int8", "int8-fp32head"):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(fp32), str(out), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8,
                         nodes_to_exclude=["/head/MatMul"] if kind == "int8-fp32head" else None)
    elif kind == "nbits8":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), bits=8, block_size=32, is_symmetric=True,
                                         accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)
    else:
        raise ValueError(kind)
    record_setup(work, f"quantise-{kind}", time.perf_counter() - start)
    return out


def load_ort(work: Path, kind: str) -> OrtLanguageModel:
    import onnxruntime as ort
    from transformers import AutoTokenizer
    path = onnx_file(work, kind)
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    lm = OrtLanguageModel(f"ort-{kind}", None, AutoTokenizer.from_pretrained(language_model_folder("smollm2")),
                          torch.device("cpu"), torch.float32)
    lm.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lm


def load_ov(work: Path, kind: str) -> OvLanguageModel:
    """OpenVINO on the exported ONNX graph: "fp32" (f32 inference), "bf16" (the same IR run with the CPU's
    bf16 inference precision), "int8" (weights compressed to int8 per output channel by NNCF, f32 inference;
    the CPU plugin quantises activations per token group for such layers), "int8-bf16", "int8-g128" (activation groups of 128 instead of the default 32)."""
    import openvino as ov
    from transformers import AutoTokenizer
    weights, hint = {"fp32": ("fp32", "f32"), "bf16": ("fp32", "bf16"), "int8": ("int8", "f32"),
                     "int8-bf16": ("int8", "bf16"), "int8-g128": ("int8", "f32")}[kind]
    xml = work / f"ov-{weights}.xml"
    if not xml.exists():
        start = time.perf_counter()
        model = ov.convert_model(str(onnx_file(work, "fp32")))
        if weights == "int8":
            import nncf
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        ov.save_model(model, str(xml), compress_to_fp16=False)
        record_setup(work, f"openvino-{weights}", time.perf_counter() - start)
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if kind == "int8-g128":  # activations quantised per token in groups of 128 input channels (default 32)
        config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = "128"
    lm = OvLanguageModel(f"ov-{kind}", None, AutoTokenizer.from_pretrained(language_model_folder("smollm2")),
                         torch.device("cpu"), torch.float32)
    lm.compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
    return lm


def load_runtime(name: str, work: Path) -> LanguageModel:
    if name == "torch-fp32":
        return load_language_model("smollm2", "cpu", "fp32")
    if name == "torch-bf16":
        return load_language_model("smollm2", "cpu", "bf16")
    if name == "ct2-int8":
        from scar_core.engine import load_int8_language_model
        return load_int8_language_model("smollm2")
    if name.startswith("ort-"):
        return load_ort(work, name[4:])
    if name.startswith("ov-"):
        return load_ov(work, name[3:])
    raise ValueError(name)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr
    keep = ~(np.isnan(a) | np.isnan(b))
    return float(spearmanr(a[keep], b[keep]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtimes", nargs="+", choices=ALL,
                    default=["torch-fp32", "torch-bf16", "ct2-int8", "ort-fp32", "ort-int8", "ort-nbits8", "ov-fp32",
                             "ov-bf16", "ov-int8", "ov-int8-g128"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/ort"))
    ap.add_argument("--identity", nargs="*", default=["ct2-int8", "ort-int8", "ort-nbits8", "ov-bf16", "ov-int8", "ov-int8-g128"],
                    help="runtimes whose NLLs are compared bit for bit across batch compositions")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    flags = subprocess.run("grep -o -w -E 'avx512_bf16|avx512_vnni|avx_vnni|amx_bf16|amx_int8|avx2' "
                           "/proc/cpuinfo | sort -u | tr '\\n' ' '", shell=True, capture_output=True,
                           text=True).stdout.strip()
    print(f"CPU flags: {flags}; load average at start: {os.getloadavg()}")
    instructions, responses = sample_pairs()
    term = load_ranker("default").lm_term
    settings = dict(max_tokens=term.max_tokens, copy_span=term.copy_span, min_tokens=term.min_tokens,
                    count_end=term.count_end)
    print(f"LM term: {term.lm} {settings}")

    runtimes, setup = {}, {}
    for name in args.runtimes:
        start = time.perf_counter()
        runtimes[name] = load_runtime(name, args.work)
        setup[name] = time.perf_counter() - start
    one_off = setup_record(args.work)
    tokenizer = runtimes[args.runtimes[0]].tokenizer
    end = end_of_turn(tokenizer) if term.count_end else None
    widths = np.array([_encode(tokenizer, Example(instruction=i, response=r), term.max_tokens, term.copy_span,
                               term.min_tokens, end).width for i, r in zip(instructions, responses)])
    print(f"{len(responses)} pairs, {widths.sum()} tokens (prompt + response), widths {widths.min()}-{widths.max()}")

    for lm in runtimes.values():  # warm-up: first-call allocations and kernel choices
        response_nll(lm, instructions[:4], responses[:4], **settings)
    seconds = {name: 0.0 for name in runtimes}
    nll = {name: np.full(len(responses), np.nan) for name in runtimes}
    for seg in range(3):
        part = slice(32 * seg, 32 * seg + 32)
        for name, lm in runtimes.items():
            start = time.perf_counter()
            nll[name][part] = response_nll(lm, instructions[part], responses[part], **settings)
            seconds[name] += time.perf_counter() - start
        print(f"segment {seg + 1}/3 done, load average {os.getloadavg()[0]:.2f}", flush=True)

    identity = {}
    for name in args.identity:
        if name not in runtimes:
            continue
        whole = response_nll(runtimes[name], instructions, responses, **settings)
        halves = np.concatenate([response_nll(runtimes[name], instructions[:48], responses[:48], **settings),
                                 response_nll(runtimes[name], instructions[48:], responses[48:], **settings)])
        same = np.array_equal(whole, halves, equal_nan=True)
        same_seg = np.array_equal(whole, nll[name], equal_nan=True)
        diff = np.nanmax(np.abs(whole - halves))
        identity[name] = {"whole_vs_halves_identical": bool(same), "whole_vs_segments_identical": bool(same_seg),
                          "max_abs_diff": float(diff)}
        print(f"batch identity {name}: whole vs halves {'identical' if same else 'DIFFER'} (max |diff| {diff:.3g}); "
              f"whole vs 3 segments {'identical' if same_seg else 'DIFFER'}")

    ref = nll.get("torch-fp32")
    results = {}
    print("\n| runtime | tokens/s | x torch fp32 | Spearman to torch fp32 | max abs NLL diff | NaN pattern same | "
          "load s | one-off set-up s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in runtimes:
        tps = widths.sum() / seconds[name]
        rho = spearman(nll[name], ref) if ref is not None else float("nan")
        diff = float(np.nanmax(np.abs(nll[name] - ref))) if ref is not None else float("nan")
        nan_same = bool(np.array_equal(np.isnan(nll[name]), np.isnan(ref))) if ref is not None else True
        extra = {}
        if name.startswith(("ort-", "ov-")):
            kind = name.split("-", 1)[1]
            step = (f"quantise-{kind}" if name.startswith("ort-")
                    else f"openvino-{'int8' if kind.startswith('int8') else 'fp32'}")
            extra = {k: one_off[k] for k in ("export-fp32", step) if k in one_off}
        results[name] = {"tokens_per_s": round(tps, 1), "spearman": round(rho, 5), "max_abs_diff": round(diff, 5),
                         "nan_same": nan_same, "load_s": round(setup[name], 1), "one_off_s": extra}
        speed = tps / (widths.sum() / seconds["torch-fp32"]) if "torch-fp32" in seconds else float("nan")
        print(f"| {name} | {tps:.0f} | {speed:.2f} | {rho:.5f} | {diff:.2g} | {nan_same} | {setup[name]:.1f} | "
              f"{', '.join(f'{k} {v}' for k, v in extra.items()) or '-'} |")
    print(f"\nload average at end: {os.getloadavg()}")
    print(json.dumps({"pairs": len(responses), "tokens": int(widths.sum()), "cpu_flags": flags,
                      "loadavg_end": os.getloadavg(), "results": results, "batch_identity": identity}))


if __name__ == "__main__":
    main()
