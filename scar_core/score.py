"""Score step: run a StyleRanker over many pairs, fast on CPU and GPU.

A pair's results depend on the pair alone (its texts), the ranker, the device and the precision,
bit for bit: not on the batch size, the chunks, the order or which other pairs are scored with it,
so the CLI, the app's scoring job (which scores only rows missing from the store) and the Ray
engine agree. Each text is padded to its own width (scar_core.lm.padded_width, its token count
rounded up to a multiple of 16) and batched only with texts of that width, and every linear layer
runs on whole blocks of 8 rows (scar_core.lm.row_blocks); the LM term's NLL follows the same rules.
Measured on a CPU (fp32 and bf16, 1 and 2 threads); on a GPU other kernels may choose otherwise. The rule's
version is scar_core.scoring_rule.SCORING_RULE: raise it with any change that can move a score's bits.

What makes it fast (bench/throughput.py measures it against scar-tool): texts are encoded in
batches of one padded width sized by a token budget, so padding is small; each distinct instruction
is encoded once; everything runs under `torch.inference_mode`; with bf16/fp16 one autocast region
spans all batches of a call, so the encoder weights are cast once, not once per batch. On CPU
small batches (2k tokens) are as fast per token as big ones; GPUs get big ones. A ranker with a
measured LM term (scar_core.ranker.LMTerm) also runs its language model over every pair, which on a
CPU costs several times the encoder's time; a predicted term costs nothing more than the head.
Results come back in input order.
`iter_scores` yields chunk by chunk so callers (background jobs) can commit as they go.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from scar_core.device import resolve
from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.lm import Progress, padded_width, row_blocks
from scar_core.ranker import StyleRanker


# (most texts, most padded tokens) per encoder batch when the caller does not say.
BATCH_DEFAULTS = {"cpu": (128, 2048), "cuda": (512, 65536), "mps": (256, 16384)}


RESULT_FIELDS = ("score", "v_lf", "v_is", "truncated_instruction", "truncated_response")
LM_FIELDS = ("lm_nll", "lm_part")  # present for rankers with an LM term
LMNLL = Callable[[list[str], list[str], Progress | None], np.ndarray]  # (instructions, responses, progress) -> NLLs
# (token ids of texts, want max-pool) -> (pooled vectors, max-pooled states or None): StyleRanker.embed
# run elsewhere, a text at a time (scar_core.engine's int8 engine runs it in ONNX Runtime)
Embed = Callable[[list[list[int]], bool], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Scores:
    """Per-pair results, aligned with the input order (or with `index` for a chunk)."""

    score: np.ndarray                  # (N,) float32
    v_lf: np.ndarray                   # (N, H) float32, linguistic-form representation
    v_is: np.ndarray                   # (N, H) float32, instructional-surprisal representation
    truncated_instruction: np.ndarray  # (N,) bool
    truncated_response: np.ndarray     # (N,) bool
    index: np.ndarray | None = None    # (N,) positions in the input, for a chunk
    lm_nll: np.ndarray | None = None   # (N,) float64, the LM term's NLL per response, measured or predicted
    lm_part: np.ndarray | None = None  # (N,) float32, the LM term's share of `score` (same rankers)


def default_chunk_rows(device_type: str) -> int:
    """Rows per chunk (a progress report, a commit in the scoring job): a few seconds of work, about
    1-60 pairs/s on 2 CPU cores depending on the ranker, thousands on a GPU."""
    return {"cuda": 2048, "mps": 512}.get(device_type, 64)


def score_examples(ranker: StyleRanker, examples: Sequence[Example], **options) -> Scores:
    """Score Examples; multi-turn prompts are truncated from the left (oldest turns go first)."""
    return score_pairs(ranker, [e.ranker_instruction() for e in examples], [e.response for e in examples],
                       left_truncate=[bool(e.context) for e in examples], **options)


def score_pairs(ranker: StyleRanker, instructions: Sequence[str], responses: Sequence[str],
                **options) -> Scores:
    """Score (instruction, response) pairs; results in input order."""
    return in_input_order(list(iter_scores(ranker, instructions, responses, **options)), len(responses), ranker)


def in_input_order(parts: Sequence[Scores], n: int, ranker: StyleRanker) -> Scores:
    """One Scores of `n` rows in input order from chunks that carry their `index` (every row once)."""
    if not parts:
        h = ranker.hidden_dim
        return Scores(np.zeros(0, np.float32), np.zeros((0, h), np.float32), np.zeros((0, h), np.float32),
                      np.zeros(0, bool), np.zeros(0, bool))
    order = np.empty(n, dtype=np.int64)
    order[np.concatenate([p.index for p in parts])] = np.arange(n)
    fields = RESULT_FIELDS + (LM_FIELDS if ranker.lm_term is not None else ())
    return Scores(**{f: np.concatenate([getattr(p, f) for p in parts])[order] for f in fields})


def iter_scores(ranker: StyleRanker, instructions: Sequence[str], responses: Sequence[str], *,
                left_truncate: Sequence[bool] | None = None, device: str = "auto",
                precision: str = "fp32", batch_size: int | None = None, token_budget: int | None = None,
                chunk_rows: int | None = None, progress: Progress | None = None,
                lm_nll: LMNLL | None = None, embed: Embed | None = None) -> Iterator[Scores]:
    """Yield Scores for chunks of rows (default_chunk_rows when None), longest responses first; each
    chunk carries its `index` and `progress` hears of it. `lm_nll` measures the LM term's NLLs and
    `embed` encodes the texts in another runtime (scar_core.engine's int8 engine) instead of torch.

    batch_size / token_budget cap the texts and the padded tokens of one encoder batch
    (defaults per device in BATCH_DEFAULTS); on CUDA out-of-memory both are halved and scoring goes on.
    """
    if len(instructions) != len(responses):
        raise ScarError(f"{len(instructions)} instructions but {len(responses)} responses")
    n = len(responses)
    if n == 0:
        return
    dev, dtype = resolve(device, precision)
    chunk_rows = chunk_rows or default_chunk_rows(dev.type)
    left = list(left_truncate) if left_truncate is not None else [False] * n
    ranker.to(dev).eval()
    encoder = BatchEncoder(ranker, dev, dtype, batch_size, token_budget, embed)
    resp_ids, resp_trunc = encoder.tokenize(list(responses), left=False)
    order = sorted(range(n), key=lambda i: len(resp_ids[i]), reverse=True)
    instr_cache: dict[tuple[str, bool], tuple[np.ndarray, bool]] = {}
    start, done = time.perf_counter(), 0
    for lo in range(0, n, chunk_rows):
        idx = order[lo:lo + chunk_rows]
        keys = list(dict.fromkeys((instructions[i], left[i]) for i in idx if (instructions[i], left[i]) not in instr_cache))
        for side in (False, True):
            todo = [k for k in keys if k[1] == side]
            if todo:
                ids, trunc = encoder.tokenize([k[0] for k in todo], left=side)
                pooled, _ = encoder.encode(ids, want_max=False)
                instr_cache.update({k: (pooled[j], trunc[j]) for j, k in enumerate(todo)})
        pooled_r, v_lf = encoder.encode([resp_ids[i] for i in idx], want_max=True)
        e_i = np.stack([instr_cache[(instructions[i], left[i])][0] for i in idx])
        nll = None
        if ranker.runs_lm:  # the LM takes most of a chunk's time: report its progress as it goes
            def measured(k: int, _total: int, _rate: float, done: int = done) -> None:
                if progress:
                    progress(done + k, n, (done + k) / max(time.perf_counter() - start, 1e-9))
            texts = [instructions[i] for i in idx], [responses[i] for i in idx]
            nll = torch.from_numpy(lm_nll(*texts, measured) if lm_nll else
                                   ranker.lm_nll(*texts, dev, dtype, progress=measured))
        with torch.inference_mode(), row_blocks(ranker):
            head_dev = next(ranker.relation_network.parameters()).device
            form = torch.from_numpy(v_lf).to(head_dev)
            score, v_is = ranker.head(torch.from_numpy(e_i).to(head_dev), torch.from_numpy(pooled_r).to(head_dev),
                                      form, nll)
            if ranker.lm_term is not None and ranker.lm_term.predicted:
                nll = ranker.predicted_nll(v_is, form).double().cpu()
            lm_part = None if nll is None else ranker.lm_score(nll.to(head_dev)).float().cpu().numpy()
        done += len(idx)
        if progress:
            progress(done, n, done / max(time.perf_counter() - start, 1e-9))
        yield Scores(score.float().cpu().numpy(), v_lf, v_is.float().cpu().numpy(),
                     np.array([instr_cache[(instructions[i], left[i])][1] for i in idx], dtype=bool),
                     resp_trunc[idx], np.asarray(idx, dtype=np.int64), None if nll is None else nll.numpy(), lm_part)


class BatchEncoder:
    """Tokenizes and encodes texts in token-budgeted batches of one padded width each (sizes left as
    None take the device's defaults from BATCH_DEFAULTS)."""

    def __init__(self, ranker: StyleRanker, device: torch.device, dtype: torch.dtype,
                 batch_size: int | None = None, token_budget: int | None = None, embed: Embed | None = None):
        self.ranker, self.device, self.dtype, self.embed = ranker, device, dtype, embed
        rows_cap, tokens_cap = BATCH_DEFAULTS.get(device.type, BATCH_DEFAULTS["cpu"])
        self.batch_size, self.token_budget = max(1, batch_size or rows_cap), max(1, token_budget or tokens_cap)
        self.tok = ranker.tokenizer
        # Untruncated lengths are measured on purpose (to record truncation): silence the tokenizer's
        # one-time "sequence is longer than the maximum" warning, which would alarm users for nothing.
        self.tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
        self.max_length = min(ranker.max_length, getattr(ranker.encoder.config, "max_position_embeddings", 512))
        self.pad_id = self.tok.pad_token_id or 0

    def tokenize(self, texts: list[str], left: bool) -> tuple[list[list[int]], np.ndarray]:
        """Token ids (truncated to max_length) and whether each text was truncated."""
        saved = self.tok.truncation_side
        self.tok.truncation_side = "left" if left else "right"
        try:
            ids = self.tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        finally:
            self.tok.truncation_side = saved
        full = [i for i, x in enumerate(ids) if len(x) >= self.max_length]
        truncated = np.zeros(len(texts), dtype=bool)
        if full:
            lengths = self.tok([texts[i] for i in full], truncation=False)["input_ids"]
            truncated[full] = [len(x) > self.max_length for x in lengths]
        return ids, truncated

    def width(self, tokens: int) -> int:
        """The width a text of `tokens` tokens is padded to, whatever its batch (see the module docstring)."""
        return min(padded_width(tokens), self.max_length)

    def encode(self, ids: list[list[int]], want_max: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(pooled vectors, max-pooled states or None), in the order of `ids`."""
        if self.embed is not None:
            return self.embed(ids, want_max)
        h = self.ranker.hidden_dim
        pooled = np.empty((len(ids), h), np.float32)
        maxed = np.empty((len(ids), h), np.float32) if want_max else None
        widths = [self.width(len(x)) for x in ids]
        order = sorted(range(len(ids)), key=lambda i: widths[i], reverse=True)
        pos = 0
        with (torch.inference_mode(), row_blocks(self.ranker),
              torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)):
            while pos < len(order):
                width = widths[order[pos]]
                size = 1
                while (size < min(self.batch_size, max(1, self.token_budget // width), len(order) - pos)
                       and widths[order[pos + size]] == width):
                    size += 1
                batch = order[pos:pos + size]
                try:
                    p, m = self._forward([ids[i] for i in batch], width, want_max)
                except torch.OutOfMemoryError:
                    if size == 1:
                        raise ScarError("out of GPU memory even with a batch of one; use --device cpu") from None
                    torch.cuda.empty_cache()
                    self.batch_size = max(1, size // 2)
                    self.token_budget = max(1, self.token_budget // 2)
                    continue
                pooled[batch] = p
                if want_max:
                    maxed[batch] = m
                pos += size
        return pooled, maxed

    def _forward(self, batch: list[list[int]], width: int, want_max: bool):
        """One batch padded to `width` through the encoder; runs inside encode's inference/autocast region."""
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, x in enumerate(batch):
            input_ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, :len(x)] = 1
        pooled, maxed = self.ranker.embed(input_ids.to(self.device), mask.to(self.device))
        return pooled.float().cpu().numpy(), (maxed.float().cpu().numpy() if want_max else None)
