"""Scoring engines: one interface to score pairs with a ranker on a device at a precision, whatever runs it.

An Engine yields Scores chunk by chunk (each chunk's `index` into the inputs, so callers can commit as
they go) and puts them in input order (`score`). Its `name`, `device` and `precision` are what a run
records (runs.engine, runs.device, runs.precision): scores of different engines are different runs.

- torch (`TorchEngine`): scar_core.score.iter_scores on CPU, CUDA or Apple's MPS; a pair's scores
  depend on the pair alone, bit for bit (see scar_core.score).
- int8 (`Int8Engine`, CPU): the LM term's language model through CTranslate2 with int8 weights (per-row
  scales) and int8 GEMMs; the encoder in torch at bf16 where the CPU computes bf16 natively, else in
  fp32 through ONNX Runtime (`OnnxEmbed`: torch's fp32 vectors to 1e-5, about 1.3x its speed); the
  head in torch. 2.3x torch's fp32 end to end on a CPU with VNNI (the LM term is most of the time), and
  1.1x torch's bf16 where the CPU computes bf16 natively. Its NLLs differ
  from fp32 by up to a few hundredths of a nat per response (the accuracy guard in
  models/default/README.md measures what that does to the scores), but like torch's a pair's scores
  do not depend on its batch, order, chunks or thread count (measured on 96 Dolly and 96 ShareGPT
  pairs, and in tests/test_engines.py). The converted files are written once into
  scar_core.lm.cache_folder().
- Ray (scar_core.jobs.ray.RayEngine, orchestration): runs either of the above in its actors.

`local_engine` picks the in-process engine for a name ("auto", "torch", "int8").
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from scar_core.device import cpu_has_vnni, cpu_supports_bf16, precision_name, resolve
from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.lm import (LanguageModel, Progress, cache_folder, language_model_folder, response_nll)
from scar_core.ranker import StyleRanker, lm_term_of, read_config
from scar_core.score import Embed, Scores, in_input_order, iter_scores

LOCAL_ENGINES = ("auto", "torch", "int8")
INT8_COMPUTE = "int8"  # CTranslate2's compute type: int8 weights and GEMMs, float32 elsewhere
# Whether "auto" takes the int8 engine where it helps: a CPU with VNNI but without native bf16, a ranker
# that runs its LM (2.3x torch fp32 there on the 640-pair mix). Where bf16 is native it is only 1.1x
# torch's bf16, whose scores rank 0.9999 with fp32 against int8's 0.998, so auto keeps torch. It met the
# accuracy guard of models/default/README.md ("Engines"): Spearman 0.998 to fp32 torch on that mix, no
# held-out pool AUC more than 0.0015 below fp32 on 300 rows per pool.
INT8_BY_DEFAULT = True
# Names the engine "auto" means on this machine ("torch" or "int8"), over the CPU's choice: one setting
# for the app, its workers and the CLI alike (the test suite pins torch with it).
AUTO_ENGINE_VARIABLE = "SCAR_ENGINE"


class Engine:
    """Scores pairs with one ranker on one device at one precision; subclasses implement iter_scores."""

    name: str       # "torch" or "int8", as runs record it
    device: str     # "cpu", "cuda:0", "mps", "ray:cpu", ...
    precision: str  # "fp32", "bf16", "fp16"

    def __init__(self, ranker: StyleRanker):
        self.ranker = ranker

    def iter_scores(self, instructions: Sequence[str], responses: Sequence[str], *,
                    left_truncate: Sequence[bool] | None = None, progress: Progress | None = None) -> Iterator[Scores]:
        """Scores for chunks of rows, each with its `index` into the inputs; every row exactly once."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what scoring needs now (a worker reports 'loading' before its first chunk, not inside it)."""

    def score(self, instructions: Sequence[str], responses: Sequence[str], *,
              left_truncate: Sequence[bool] | None = None, progress: Progress | None = None) -> Scores:
        """Scores of all pairs, in input order."""
        parts = list(self.iter_scores(instructions, responses, left_truncate=left_truncate, progress=progress))
        return in_input_order(parts, len(responses), self.ranker)

    def score_examples(self, examples: Sequence[Example], progress: Progress | None = None) -> Scores:
        """Score Examples; multi-turn prompts are truncated from the left (oldest turns go first)."""
        return self.score([e.ranker_instruction() for e in examples], [e.response for e in examples],
                          left_truncate=[bool(e.context) for e in examples], progress=progress)

    def describe(self) -> dict:
        """The engine as manifests record it."""
        return {"engine": self.name, "device": self.device, "precision": self.precision}


class TorchEngine(Engine):
    """The ranker in torch (scar_core.score.iter_scores) on CPU, CUDA or MPS."""

    name = "torch"

    def __init__(self, ranker: StyleRanker, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, chunk_rows: int | None = None):
        super().__init__(ranker)
        self.dev, self.dtype = resolve(device, precision)
        self.device, self.precision = str(self.dev), precision_name(self.dtype)
        self.batch_size, self.chunk_rows = batch_size, chunk_rows

    def prepare(self) -> None:
        if self.ranker.runs_lm:
            self.ranker.language_model(self.dev, self.dtype)

    def iter_scores(self, instructions, responses, *, left_truncate=None, progress=None) -> Iterator[Scores]:
        return iter_scores(self.ranker, instructions, responses, left_truncate=left_truncate, device=self.device,
                           precision=self.precision, batch_size=self.batch_size, chunk_rows=self.chunk_rows,
                           progress=progress)


class Int8Engine(TorchEngine):
    """The encoder and head in torch on the CPU, the LM term through CTranslate2 in int8."""

    name = "int8"

    def __init__(self, ranker: StyleRanker, device: str = "cpu", precision: str = "auto",
                 batch_size: int | None = None, chunk_rows: int | None = None):
        super().__init__(ranker, "cpu" if device == "auto" else device, precision, batch_size, chunk_rows)
        if self.dev.type != "cpu":
            raise ScarError(f"the int8 engine runs on the CPU, not {self.device}; use --engine torch on a GPU")
        if not cpu_has_vnni():
            print("note: this CPU has no VNNI, where int8 GEMMs pass products through 16 bits and can saturate: "
                  "measured with AVX2 alone, the int8 engine's scores ranked 0.990 (Spearman) with fp32 torch's, "
                  "below the 0.995 it is held to (models/default/README.md); --engine torch is exact", file=sys.stderr)
        self._lm: Int8LanguageModel | None = None
        self._embed: Embed | None = None

    def prepare(self) -> None:
        if self.ranker.runs_lm and self._lm is None:
            self._lm = load_int8_language_model(self.ranker.lm_term.lm)
        if self.dtype == torch.float32 and self._embed is None:
            self._embed = OnnxEmbed(self.ranker)

    def lm_nll(self, instructions: list[str], responses: list[str], progress: Progress | None = None) -> np.ndarray:
        """The LM term's NLLs from the int8 LM, with the term's settings."""
        self.prepare()
        term = self.ranker.lm_term
        return response_nll(self._lm, instructions, responses, max_tokens=term.max_tokens, copy_span=term.copy_span,
                            min_tokens=term.min_tokens, count_end=term.count_end, progress=progress)

    def iter_scores(self, instructions, responses, *, left_truncate=None, progress=None) -> Iterator[Scores]:
        self.prepare()
        return iter_scores(self.ranker, instructions, responses, left_truncate=left_truncate, device=self.device,
                           precision=self.precision, batch_size=self.batch_size, chunk_rows=self.chunk_rows,
                           progress=progress, lm_nll=self.lm_nll, embed=self._embed)


class OnnxEmbed:
    """StyleRanker.embed in fp32 through ONNX Runtime, one text at a time at its own length: no padding,
    fused kernels, torch's fp32 vectors to about 1e-5 at 1.3x its fp32 speed on 2 cores
    (bench/encoder_engines.py), and a text's vectors never depend on the texts beside it. The graph is
    exported once into cache_folder()/onnx/ under the checkpoint's weights."""

    def __init__(self, ranker: StyleRanker, graph: Path | None = None, spin: bool = False):
        """`graph`: another ONNX file of the same inputs and outputs (the benchmarks' quantised one);
        `spin`: let idle threads spin (off: CTranslate2's and torch's threads share the cores)."""
        try:
            import onnxruntime
        except ImportError:
            raise ScarError("the int8 engine needs ONNX Runtime: pip install onnxruntime==1.32.0 onnx==1.23.2") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.session = onnxruntime.InferenceSession(str(graph or onnx_embed_file(ranker)), options,
                                                    providers=["CPUExecutionProvider"])

    def __call__(self, ids: list[list[int]], want_max: bool) -> tuple[np.ndarray, np.ndarray | None]:
        rows = [self.session.run(None, {"input_ids": np.asarray([x], np.int64),
                                        "attention_mask": np.ones((1, len(x)), np.int64)}) for x in ids]
        return np.concatenate([r[0] for r in rows]), (np.concatenate([r[1] for r in rows]) if want_max else None)


class EmbedGraph(torch.nn.Module):
    """StyleRanker.embed as a module, for exporters (ONNX here; OpenVINO in bench/encoder_engines.py)."""

    def __init__(self, ranker: StyleRanker):
        super().__init__()
        self.ranker = ranker

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.ranker.embed(input_ids, attention_mask)


def onnx_embed_file(ranker: StyleRanker) -> Path:
    """StyleRanker.embed as an ONNX file, exported once into cache_folder()/onnx/ under the checkpoint's
    weights hash (the encoder's parameters hashed where the ranker was not loaded from a file)."""
    key = ranker.weights_hash or state_hash(ranker.encoder)
    target = cache_folder() / "onnx" / f"embed-{key[:24]}.onnx"
    if target.exists():
        return target
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
    except ImportError:
        raise ScarError("the int8 engine needs the onnx package to export the encoder: pip install onnx==1.23.2") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial_file = target.with_name(f"{target.name}.{os.getpid()}.partial")
    ids = torch.ones(2, 16, dtype=torch.long)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes, for nothing a user can act on
        torch.onnx.export(EmbedGraph(ranker).eval(), (ids, torch.ones_like(ids)), str(partial_file),
                          dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask"],
                          output_names=["pooled", "maxed"],
                          dynamic_axes={"input_ids": {0: "rows", 1: "tokens"}, "attention_mask": {0: "rows", 1: "tokens"}})
    os.replace(partial_file, target)  # whole or absent, whichever process finishes first
    return target


def state_hash(module: torch.nn.Module) -> str:
    """A SHA-256 over a module's parameter names and fp32 values."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class Int8LanguageModel(LanguageModel):
    """A causal LM run by a CTranslate2 Generator with int8 weights; NLLs from its per-token log-probs."""

    generator: object = None

    def batch_nll(self, batch) -> np.ndarray:
        tokens = [self.tokenizer.convert_ids_to_tokens(pair.prompt + pair.response) for pair in batch]
        results = self.generator.score_batch(tokens)
        out = np.full(len(batch), np.nan)
        for row, (pair, result) in enumerate(zip(batch, results)):
            # log_probs[j] is the log-probability of token j + 1 given the tokens before it
            positions = len(pair.prompt) - 1 + np.flatnonzero(pair.counted)
            if pair.prompt and positions.size:
                out[row] = -np.asarray(result.log_probs, np.float64)[positions].mean()
        return out


def load_int8_language_model(name: str, compute_type: str = INT8_COMPUTE) -> Int8LanguageModel:
    """The LM `name` (scar_core.lm.language_model_folder) converted to CTranslate2 once, into
    cache_folder()/ctranslate2/ under the weights' identity and `compute_type` (INT8_COMPUTE; tests
    check the conversion with "float32"), then loaded from there."""
    try:
        import ctranslate2
    except ImportError:
        raise ScarError("the int8 engine needs CTranslate2: pip install ctranslate2==4.8.5") from None
    from transformers import AutoTokenizer

    source = Path(language_model_folder(name))
    if not source.is_dir():
        raise ScarError(f"the int8 engine needs a local language model folder, not '{name}'")
    converted = cache_folder() / "ctranslate2" / f"{weights_key(source)}-{compute_type}"
    if not (converted / "model.bin").exists():
        converted.parent.mkdir(parents=True, exist_ok=True)
        partial_folder = converted.with_name(f"{converted.name}.{os.getpid()}.partial")
        ctranslate2.converters.TransformersConverter(str(source)).convert(str(partial_folder), quantization=compute_type,
                                                                          force=True)
        try:
            partial_folder.rename(converted)
        except OSError:  # another process finished first
            import shutil

            shutil.rmtree(partial_folder, ignore_errors=True)
    generator = ctranslate2.Generator(str(converted), device="cpu", compute_type=compute_type,
                                      intra_threads=torch.get_num_threads())
    lm = Int8LanguageModel(name, None, AutoTokenizer.from_pretrained(str(source)), torch.device("cpu"), torch.float32)
    lm.generator = generator
    return lm


def weights_key(folder: Path) -> str:
    """A name for a model folder's weights: the folder's own name inside the cache (already keyed by
    the file it was made from), else a SHA-256 over its weight files."""
    if cache_folder() in folder.resolve().parents:
        return folder.name
    import hashlib

    from scar_core.export import file_sha256

    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not files:
        raise ScarError(f"{folder}: no .safetensors or .bin weights for the int8 engine")
    return f"{folder.name}-{hashlib.sha256(''.join(map(file_sha256, files)).encode()).hexdigest()[:16]}"


def resolve_engine(name: str, runs_lm: bool, device: str = "auto") -> str:
    """"torch" or "int8" for an engine name: "auto" is $SCAR_ENGINE where set, else int8 only where it
    is the default (INT8_BY_DEFAULT), the device is a CPU with VNNI and without native bf16, and the
    ranker runs an LM term (`runs_lm`: the int8 engine changes nothing else)."""
    if name not in LOCAL_ENGINES:
        raise ScarError(f"unknown engine '{name}'; choose {', '.join(LOCAL_ENGINES)}")
    if name != "auto":
        return name
    on_cpu = resolve(device, "fp32")[0].type == "cpu"
    chosen = os.environ.get(AUTO_ENGINE_VARIABLE, "").strip()
    if chosen:
        if chosen not in ("torch", "int8"):
            raise ScarError(f"${AUTO_ENGINE_VARIABLE} is '{chosen}'; set it to torch or int8, or unset it")
        return chosen if on_cpu else "torch"  # the int8 engine runs on the CPU only
    helps = on_cpu and runs_lm and cpu_has_vnni() and not cpu_supports_bf16()
    return "int8" if INT8_BY_DEFAULT and helps else "torch"


def checkpoint_runs_lm(model: str | Path) -> bool:
    """Whether the checkpoint at `model` runs an LM term when it scores (resolve_engine's `runs_lm`),
    read from its config without loading it; False when the config cannot be read."""
    try:
        term = lm_term_of(read_config(model)[1])
    except ScarError:
        return False
    return term is not None and not term.predicted


def local_engine(ranker: StyleRanker, engine: str = "auto", device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None, chunk_rows: int | None = None) -> Engine:
    """The in-process engine `engine` ("auto", "torch", "int8") for a ranker on a device at a precision."""
    kind = {"torch": TorchEngine, "int8": Int8Engine}[resolve_engine(engine, ranker.runs_lm, device)]
    return kind(ranker, device, precision, batch_size, chunk_rows)
