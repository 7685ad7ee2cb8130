"""Train a SCAR style ranker (Li et al., ACL 2025) on human / referenced / direct responses.

Faithful to SCAR's training: per batch, margin ranking loss (margin 0.5) summed over the ordered
pairs direct > referenced, referenced > human, direct > human that pass the quality constraint;
plus 0.1 x the mean of two triplet margin losses (margin 1.0, L2) on rows whose three pairs all
pass: on v_is (anchor referenced, positive human, negative direct) and on v_lf (anchor direct,
positive referenced, negative human). AdamW, linear warm-up over 10% of the steps then linear
decay, gradient clipping at 1.0, fixed seed, and the checkpoint of the epoch with the best
validation pairwise accuracy.

A ranker with an LM term (scar_core.ranker.LMTerm) first has its LM measure every response once
(`nll_cache` keeps the measurements in a file for the next run); the term's single weight learns at
its own rate (`lm_lr`), since the encoder's 2e-5 would leave it near zero. The NLL's
standardisation comes from the training responses the first time. A predicted term (distilled) adds
`distil_weight` x the mean squared error between its predicted and the measured standardised NLL
to the loss, so the encoder learns what the LM measures and scoring no longer needs the LM.

`length_debias` adds training rows whose LLM answer is cut, at a sentence end, to shorter than
the human answer (see training_data.length_debiased), so that "longer wins" stops paying off.

CPU options: `freeze_encoder` trains only the head; then the encoder's outputs (pooled vectors
and max-pooled states) are computed once and cached, which gives the same head updates as
running the frozen encoder every step, only faster. `adapters="lora"` trains LoRA adapters
(peft) on the encoder plus the head and merges them into the encoder weights when saving.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scar_core.errors import ScarError
from scar_core.evaluate import pairwise_report, score_rows
from scar_core.ranker import LMTerm, StyleRanker
from scar_core.training_data import PAIR_NAMES, PAIRS, ROLES, TrainRow, length_debiased, training_pairs


@dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-5
    weight_decay: float = 0.01        # torch's AdamW default, as SCAR uses it
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    margin: float = 0.5
    triplet_margin: float = 1.0
    representation_weight: float = 0.1
    quality_mode: str = "abs"
    quality_min: float = 5.0
    quality_max: float = 10.0
    val_ratio: float = 0.1
    seed: int = 42
    freeze_encoder: bool = False
    cache_features: bool = True       # with a frozen encoder: encode once, train the head on the cache
    adapters: str | None = None       # "lora"
    lora_rank: int = 8
    save_encoder: bool | None = None  # None: save the encoder unless it was frozen
    device: str = "auto"
    encode_precision: str = "auto"    # of the frozen encoder's one-off pass; auto = as scoring does (bf16 where native)
    encode_batch_size: int = 64
    max_length: int | None = None     # token limit of texts while training the encoder live (None: the ranker's)
    train_precision: str = "fp32"     # "bf16": autocast the live encoder's passes (a CPU with native bf16 runs 3x faster)
    save_precision: str = "fp32"      # "fp16": store the checkpoint's weights in half precision (half the size)
    length_debias: bool = False       # add training rows whose LLM answer is cut shorter than the human one
    lm_lr: float = 1e-2               # learning rate of an LM term's weight
    distil_weight: float = 1.0        # a predicted LM term: weight of its regression loss (MSE of the standardised NLL)
    nll_cache: str | None = None      # JSONL of measured NLLs, read before measuring and written after


@dataclass
class TrainProgress:
    """What a progress callback receives, after every optimiser step and at the end of each epoch."""

    phase: str                 # "lm", "encode", "train" or "epoch"
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None  # mean training loss of the epoch so far
    val_accuracy: float | None = None


@dataclass
class EpochStats:
    epoch: int
    loss: float | None
    val_accuracy: float | None
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochStats]
    best_epoch: int
    best_val_accuracy: float | None
    n_train_rows: int
    n_val_rows: int
    train_pairs: dict[str, int]
    out: Path | None = None
    n_length_debias_rows: int = 0      # of n_train_rows, added by length_debias

    def summary(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out) if self.out else None
        return d


@dataclass
class Features:
    """A frozen encoder's outputs per row: instruction pooled vector, and per role the response's
    pooled vector and max-pooled states (v_lf); zero rows where a row lacks the role."""

    instruction: torch.Tensor
    response: dict[str, torch.Tensor]
    form: dict[str, torch.Tensor]

    def extend(self, more: Features) -> Features:
        """These rows' features followed by `more`'s."""
        return Features(torch.cat([self.instruction, more.instruction]),
                        {r: torch.cat([t, more.response[r]]) for r, t in self.response.items()},
                        {r: torch.cat([t, more.form[r]]) for r, t in self.form.items()})


Callback = Callable[[TrainProgress], None]


def encode_features(ranker: StyleRanker, rows: Sequence[TrainRow], device: str = "auto",
                    precision: str = "auto", batch_size: int = 64, progress: Callback | None = None) -> Features:
    """Run the (frozen) encoder once over every distinct instruction and response of `rows`."""
    from scar_core.device import resolve_device, resolve_precision
    from scar_core.score import BatchEncoder

    dev = resolve_device(device)
    ranker.to(dev).eval()
    encoder = BatchEncoder(ranker, dev, resolve_precision(precision, dev), batch_size)
    instructions = list(dict.fromkeys(r.instruction for r in rows))
    responses = list(dict.fromkeys(t for r in rows for t in r.responses.values()))
    total, done = len(instructions) + len(responses), 0
    vectors: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for texts, want_max in ((instructions, False), (responses, True)):
        for lo in range(0, len(texts), 256):
            chunk = texts[lo:lo + 256]
            ids, _ = encoder.tokenize(chunk, left=False)
            pooled, maxed = encoder.encode(ids, want_max)
            for j, text in enumerate(chunk):
                vectors[(want_max, text)] = (pooled[j], maxed[j] if want_max else None)
            done += len(chunk)
            if progress:
                progress(TrainProgress("encode", 0, 0, done, total))
    h = ranker.hidden_dim
    e_i = torch.from_numpy(np.stack([vectors[(False, r.instruction)][0] for r in rows]))
    response, form = {}, {}
    for role in ROLES:
        pooled, maxed = np.zeros((len(rows), h), np.float32), np.zeros((len(rows), h), np.float32)
        for i, row in enumerate(rows):
            if role in row.responses:
                pooled[i], maxed[i] = vectors[(True, row.responses[role])]
        response[role], form[role] = torch.from_numpy(pooled), torch.from_numpy(maxed)
    return Features(e_i, response, form)


def start_ranker(init: str | None = None, encoder: str = "minilm", linear_dim: int | None = None,
                 seed: int = 42, lm: str | None = None, lm_max_tokens: int | None = None,
                 predict_lm: bool = False) -> StyleRanker:
    """The ranker training starts from: a trained one (`init`: "default" or a folder) or a fresh head
    on `encoder`; `lm` adds an LM term (scar_core.ranker.LMTerm) when the ranker has none, reading at
    most `lm_max_tokens` tokens per pair (LMTerm's default when None); `predict_lm` makes the term
    predicted by the ranker itself (distilled), keeping a trained term's weight."""
    ranker = _start_ranker(init, encoder, linear_dim, seed, lm, lm_max_tokens)
    if predict_lm:
        if ranker.lm_term is None:
            raise ScarError("--predict-lm distils an LM term into the ranker: it needs --lm-surprisal "
                            "or an --init ranker with an LM term")
        if not ranker.lm_term.predicted:
            ranker.predict_lm()
    return ranker


def _start_ranker(init: str | None, encoder: str, linear_dim: int | None, seed: int, lm: str | None,
                  lm_max_tokens: int | None) -> StyleRanker:
    from scar_core.ranker import LMTerm, load_ranker, new_ranker

    if lm_max_tokens and not lm and not init:
        raise ScarError("--lm-max-tokens sets the LM term's token limit: it needs --lm-surprisal")
    if not init:
        ranker = new_ranker(encoder, linear_dim=linear_dim, seed=seed, lm=lm)
        if lm and lm_max_tokens:
            ranker.lm_term.max_tokens = lm_max_tokens
        return ranker
    if linear_dim:
        raise ScarError("--linear-dim cannot change a trained ranker's head (--init); leave it out")
    torch.manual_seed(seed)
    ranker = load_ranker(init)
    if lm and ranker.lm_term is None:
        ranker.add_lm_term(LMTerm(lm, **({"max_tokens": lm_max_tokens} if lm_max_tokens else {})))
    elif lm and ranker.lm_term.lm != lm:
        raise ScarError(f"{init} already has an LM term with '{ranker.lm_term.lm}'; it cannot change to '{lm}'")
    elif lm_max_tokens and ranker.lm_term is None:
        raise ScarError("--lm-max-tokens sets the LM term's token limit: it needs --lm-surprisal")
    elif lm_max_tokens and ranker.lm_term.max_tokens != lm_max_tokens:
        raise ScarError(f"{init}'s LM term reads {ranker.lm_term.max_tokens} tokens and its weight was trained so; "
                        f"it cannot change to {lm_max_tokens} (leave --lm-max-tokens out)")
    return ranker


def split_rows(rows: Sequence[TrainRow], val_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) row indices; rows sharing an instruction stay on the same side."""
    groups = list(dict.fromkeys(r.instruction for r in rows))
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = int(round(len(groups) * val_ratio)) if len(groups) > 1 else 0
    val_groups = {groups[k] for k in order[:n_val]}
    train = [i for i, r in enumerate(rows) if r.instruction not in val_groups]
    return train, [i for i, r in enumerate(rows) if r.instruction in val_groups]


def scar_loss(outputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
              selected: Sequence[Sequence[tuple[str, str]]], config: TrainConfig) -> torch.Tensor | None:
    """SCAR's loss for a batch. outputs: role -> (score, v_is, v_lf), each batch-sized;
    selected: per row, the (better, worse) pairs that pass the quality constraint."""
    masks = {p: torch.tensor([p in sel for sel in selected]) for p in PAIRS}
    ranking = nn.MarginRankingLoss(margin=config.margin)
    loss = None
    for (better, worse), m in masks.items():
        if m.any():
            m = m.to(outputs[better][0].device)
            s_b, s_w = outputs[better][0][m], outputs[worse][0][m]
            term = ranking(s_b, s_w, torch.ones_like(s_b))
            loss = term if loss is None else loss + term
    full = masks[PAIRS[0]] & masks[PAIRS[1]] & masks[PAIRS[2]]
    if config.representation_weight and full.any():
        triplet = nn.TripletMarginLoss(margin=config.triplet_margin, p=2)
        full = full.to(outputs["direct"][0].device)
        d, r, h = (outputs[role] for role in ("direct", "referenced", "human"))
        surprisal = triplet(r[1][full], h[1][full], d[1][full])
        form = triplet(d[2][full], r[2][full], h[2][full])
        loss = loss + config.representation_weight * (surprisal + form) / 2
    return loss


def distil_loss(ranker: StyleRanker, outputs: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                rows: Sequence[TrainRow]) -> torch.Tensor | None:
    """Mean squared error between a predicted LM term's standardised NLL and the measured one, over
    the batch's responses that have a measurement (None when none has)."""
    predicted, measured = [], []
    for role, (_score, v_is, v_lf) in outputs.items():
        target = _nll(ranker, rows, role).to(v_is.device)
        have = ~target.isnan()
        if have.any():
            predicted.append(ranker.standardised(ranker.predicted_nll(v_is[have], v_lf[have])))
            measured.append(ranker.standardised(target[have]))
    if not predicted:
        return None
    return nn.functional.mse_loss(torch.cat(predicted), torch.cat(measured))


def train(ranker: StyleRanker, rows: Sequence[TrainRow], config: TrainConfig | None = None,
          out: str | Path | None = None, progress: Callback | None = None,
          features: Features | None = None, metadata: dict | None = None) -> TrainResult:
    """Train `ranker` in place on `rows` and keep the best epoch's weights; save to `out` if given.

    `features` (aligned with `rows`) reuses an earlier encode_features call with a frozen encoder."""
    from scar_core.device import resolve_device

    config = config or TrainConfig()
    _check(config)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    data, features = _training_set(ranker, rows, config, features)
    if ranker.lm_term is not None:
        measure_lm(ranker, data.rows, data.train_idx, config, progress)
    features = _prepare_encoder(ranker, data.rows, config, features, progress)
    ranker.to(device)
    history, best_epoch, best_weights = _fit(ranker, data, config, features, device, progress)
    ranker.load_state_dict(best_weights, strict=False)
    if config.adapters == "lora":
        ranker.encoder = ranker.encoder.merge_and_unload()
    ranker.eval()
    result = TrainResult(history, best_epoch, history[best_epoch - 1].val_accuracy, len(data.train_idx),
                         len(data.val_idx), data.pair_counts(), n_length_debias_rows=data.length_debias_rows)
    if out is not None:
        result.out = _save(ranker, out, config, result, metadata)
    return result


@dataclass
class _TrainingSet:
    """The rows training sees (length-debiased rows appended), the validation rows, and the training rows
    that have pairs passing the quality constraint, with those pairs."""

    rows: list[TrainRow]
    train_idx: list[int]
    val_idx: list[int]
    selected: dict[int, list[tuple[str, str]]]
    length_debias_rows: int

    def pair_counts(self) -> dict[str, int]:
        return {PAIR_NAMES[p]: sum(p in self.selected[i] for i in self.train_idx) for p in PAIRS}


def _training_set(ranker: StyleRanker, rows: Sequence[TrainRow], config: TrainConfig,
                  features: Features | None) -> tuple[_TrainingSet, Features | None]:
    """Split rows into training and validation by instruction, add length-debiased rows on the training
    side only (and their features to given ones), and keep the training rows with pairs to learn from."""
    train_idx, val_idx = split_rows(rows, config.val_ratio, config.seed)
    debias_rows = length_debiased([rows[i] for i in train_idx], config.seed) if config.length_debias else []
    if debias_rows:
        train_idx += range(len(rows), len(rows) + len(debias_rows))
        if features is not None:
            features = features.extend(encode_features(ranker, debias_rows, config.device, config.encode_precision,
                                                       config.encode_batch_size))
    rows = [*rows, *debias_rows]
    selected = {i: training_pairs(rows[i], config.quality_mode, config.quality_min, config.quality_max)
                for i in train_idx}
    train_idx = [i for i in train_idx if selected[i]]
    if not train_idx:
        raise ScarError("no training pairs: every row lacks two differing responses or fails the quality "
                        f"constraint (mode {config.quality_mode}, min {config.quality_min})")
    return _TrainingSet(rows, train_idx, val_idx, selected, len(debias_rows)), features


def _prepare_encoder(ranker: StyleRanker, rows: Sequence[TrainRow], config: TrainConfig,
                     features: Features | None, progress: Callback | None) -> Features | None:
    """Add LoRA adapters or freeze the encoder as configured; with a frozen encoder whose outputs are
    cached, return those outputs (computed now unless given), else None (the encoder runs live)."""
    if config.adapters == "lora":
        ranker.encoder = _with_lora(ranker.encoder, config.lora_rank)
    if config.freeze_encoder:
        ranker.encoder.requires_grad_(False)
    if not (config.freeze_encoder and config.cache_features):
        return None
    if features is None:
        features = encode_features(ranker, rows, config.device, config.encode_precision,
                                   config.encode_batch_size, progress)
    return features


class _Optimiser:
    """AdamW over the trainable parameters (an LM term's weight at its own rate, without weight decay),
    linear warm-up then decay over `total` batches, and gradient clipping; counts the batches seen."""

    def __init__(self, ranker: StyleRanker, config: TrainConfig, total: int):
        from transformers import get_linear_schedule_with_warmup

        self.params = [p for p in ranker.parameters() if p.requires_grad]
        lm_weight = [ranker.lm_weight] if ranker.lm_term is not None else []
        groups = [{"params": [p for p in self.params if not any(p is w for w in lm_weight)]}]
        if lm_weight:
            groups.append({"params": lm_weight, "lr": config.lm_lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(total * config.warmup_ratio), total)
        self.grad_clip, self.total, self.batches = config.grad_clip, total, 0

    def step(self, loss: torch.Tensor | None) -> None:
        """One batch: an update when it has a loss (a batch without pairs only counts)."""
        self.batches += 1
        if loss is None:
            return
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, max_norm=self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()


def _fit(ranker: StyleRanker, data: _TrainingSet, config: TrainConfig, features: Features | None, device,
         progress: Callback | None) -> tuple[list[EpochStats], int, dict]:
    """Run the epochs, validating after each; the history, and the best epoch by validation accuracy
    (the first of equals; the first epoch when there are no validation rows) with its weights."""
    optimiser = _Optimiser(ranker, config, math.ceil(len(data.train_idx) / config.batch_size) * config.epochs)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[EpochStats] = []
    best: tuple[float, int, dict] | None = None
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        losses = _train_epoch(ranker, data, config, features, device, optimiser, generator, epoch, progress)
        val = _validate(ranker, data.rows, data.val_idx, features, device)
        history.append(EpochStats(epoch, _avg(losses), val, round(time.perf_counter() - start, 2)))
        if progress:
            progress(TrainProgress("epoch", epoch, config.epochs, optimiser.batches, optimiser.total,
                                   _avg(losses), val))
        if best is None or (val is not None and val > best[0]):
            best = (val if val is not None else -1.0, epoch, _snapshot(ranker, config.freeze_encoder))
    return history, best[1], best[2]


def _train_epoch(ranker: StyleRanker, data: _TrainingSet, config: TrainConfig, features: Features | None, device,
                 optimiser: _Optimiser, generator: torch.Generator, epoch: int,
                 progress: Callback | None) -> list[float]:
    """One pass over the training rows in a seeded random order; the losses of its batches. The
    encoder's outputs come from `features` when cached, else from running it."""
    _train_mode(ranker, config.freeze_encoder)
    order = torch.randperm(len(data.train_idx), generator=generator).tolist()
    losses: list[float] = []
    for lo in range(0, len(order), config.batch_size):
        batch = [data.train_idx[k] for k in order[lo:lo + config.batch_size]]
        outputs = (_cached_outputs(ranker, features, batch, device, data.rows) if features is not None
                   else _live_outputs(ranker, [data.rows[i] for i in batch], device, config))
        loss = scar_loss(outputs, [data.selected[i] for i in batch], config)
        if ranker.lm_term is not None and ranker.lm_term.predicted and config.distil_weight:
            distil = distil_loss(ranker, outputs, [data.rows[i] for i in batch])
            if distil is not None:
                loss = config.distil_weight * distil if loss is None else loss + config.distil_weight * distil
        optimiser.step(loss)
        if loss is not None:
            losses.append(loss.item())
        if progress:
            progress(TrainProgress("train", epoch, config.epochs, optimiser.batches, optimiser.total, _avg(losses)))
    return losses


def _save(ranker: StyleRanker, out: str | Path, config: TrainConfig, result: TrainResult,
          metadata: dict | None) -> Path:
    """Write the trained ranker with its training config and result (the encoder unless it was frozen,
    unless save_encoder says otherwise) in the configured precision."""
    include = config.save_encoder if config.save_encoder is not None else not config.freeze_encoder
    extra = {"training": {"config": asdict(config), "result": result.summary(), **(metadata or {})}}
    dtype = torch.float16 if config.save_precision == "fp16" else None
    return ranker.save(out, include_encoder=include, extra=extra, dtype=dtype)


def _check(config: TrainConfig) -> None:
    if config.epochs < 1 or config.batch_size < 1:
        raise ScarError("epochs and batch size must be at least 1")
    if not 0 <= config.val_ratio < 1:
        raise ScarError(f"validation ratio must be in [0, 1), got {config.val_ratio}")
    if config.adapters not in (None, "lora"):
        raise ScarError(f"unknown adapters '{config.adapters}'; the only kind is 'lora'")
    if config.train_precision not in ("fp32", "bf16"):
        raise ScarError(f"training precision must be fp32 or bf16, got '{config.train_precision}'")
    if config.save_precision not in ("fp32", "fp16"):
        raise ScarError(f"save precision must be fp32 or fp16, got '{config.save_precision}'")
    if config.max_length is not None and config.max_length < 8:
        raise ScarError(f"max length must be at least 8 tokens, got {config.max_length}")
    if config.adapters and config.freeze_encoder:
        raise ScarError("choose either a frozen encoder or adapters, not both")
    training_pairs(TrainRow("x", {}), config.quality_mode)  # validates the mode name


def _with_lora(encoder: nn.Module, rank: int) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ScarError("adapters need the peft package: pip install peft") from None
    try:
        return get_peft_model(encoder, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.1))
    except ValueError as e:
        raise ScarError(f"cannot add LoRA adapters to this encoder: {e}") from None


def _train_mode(ranker: StyleRanker, frozen: bool) -> None:
    ranker.train()
    if frozen:  # a frozen encoder runs without dropout, so its cached outputs are exact
        ranker.encoder.eval()


def _snapshot(ranker: StyleRanker, frozen: bool) -> dict:
    return {k: v.detach().clone() for k, v in ranker.state_dict().items()
            if not (frozen and k.startswith("encoder."))}


def _avg(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def measure_lm(ranker: StyleRanker, rows: Sequence[TrainRow], train_idx: Sequence[int], config: TrainConfig,
               progress: Callback | None = None) -> None:
    """Measure every response of `rows` with the LM term's LM (into ranker.known_nll) and, for a new
    term, standardise by the training responses' NLL."""
    from scar_core.device import resolve_device, resolve_precision

    dev = resolve_device(config.device)
    if config.nll_cache and Path(config.nll_cache).is_file():
        ranker.known_nll.update(read_nll_cache(config.nll_cache, ranker.lm_term))
    pairs = list(dict.fromkeys((r.instruction, t) for r in rows for t in r.responses.values()))
    report = (lambda done, total, _rate: progress(TrainProgress("lm", 0, 0, done, total))) if progress else None
    nll = ranker.lm_nll([p[0] for p in pairs], [p[1] for p in pairs], dev,
                        resolve_precision(config.encode_precision, dev), report)
    ranker.known_nll.update(zip(pairs, nll.tolist()))
    if config.nll_cache:
        write_nll_cache(config.nll_cache, ranker.lm_term, ranker.known_nll)
    term = ranker.lm_term
    if term.mean is None or term.std is None:
        seen = np.array([ranker.known_nll[(rows[i].instruction, t)] for i in train_idx
                         for t in rows[i].responses.values()])
        seen = seen[~np.isnan(seen)]
        term.mean, term.std = float(seen.mean()), float(max(seen.std(), 1e-6))


# The LM term's settings that decide a measured NLL: a cache holds values for one combination.
NLL_SETTINGS = ("lm", "max_tokens", "copy_span", "min_tokens", "count_end")


def read_nll_cache(path: str | Path, term: LMTerm) -> dict[tuple[str, str], float]:
    """Measured NLLs from a cache file (see write_nll_cache) made with `term`'s settings."""
    import json

    want = {k: getattr(term, k) for k in NLL_SETTINGS}
    known = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
                if number == 1:
                    if obj.get("lm_term") != want:
                        raise ScarError(f"{path}: measured with LM term settings {obj.get('lm_term')}, not "
                                        f"this ranker's {want}; name another --nll-cache file")
                    continue
                known[(obj["instruction"], obj["response"])] = float("nan") if obj["nll"] is None else float(obj["nll"])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ScarError(f"{path}, line {number}: not a line of an NLL cache ({e})") from None
    return known


def write_nll_cache(path: str | Path, term: LMTerm, known: dict[tuple[str, str], float]) -> None:
    """Write measured NLLs as JSONL: a first line with the term's settings, then one line per
    (instruction, response) with its `nll` (null where the term counts the response as average)."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"lm_term": {k: getattr(term, k) for k in NLL_SETTINGS}}) + "\n")
        for (instruction, response), nll in known.items():
            f.write(json.dumps({"instruction": instruction, "response": response,
                                "nll": None if math.isnan(nll) else nll}) + "\n")


def _nll(ranker: StyleRanker, rows: Sequence[TrainRow], role: str) -> torch.Tensor | None:
    """Known LM NLL of each row's `role` response (NaN where absent), or None without an LM term."""
    if ranker.lm_term is None:
        return None
    return torch.tensor([ranker.known_nll.get((r.instruction, r.responses.get(role)), float("nan")) for r in rows])


def _cached_outputs(ranker: StyleRanker, features: Features, batch: list[int], device,
                    rows: Sequence[TrainRow]) -> dict:
    idx = torch.as_tensor(batch, dtype=torch.long)
    e_i = features.instruction[idx].to(device)
    outputs = {}
    for role in ROLES:
        v_lf = features.form[role][idx].to(device)
        score, v_is = ranker.head(e_i, features.response[role][idx].to(device), v_lf,
                                  _nll(ranker, [rows[i] for i in batch], role))
        outputs[role] = (score, v_is, v_lf)
    return outputs


def _live_outputs(ranker: StyleRanker, rows: list[TrainRow], device, config: TrainConfig) -> dict:
    dtype = torch.bfloat16 if config.train_precision == "bf16" else None
    with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
        e_i, _ = _embed(ranker, [r.instruction for r in rows], device, config.max_length)
    outputs = {}
    for role in ROLES:
        have = [j for j, r in enumerate(rows) if role in r.responses]
        if not have:
            continue
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            e_r, v_lf = _embed(ranker, [rows[j].responses[role] for j in have], device, config.max_length)
            score, v_is = ranker.head(e_i[have], e_r, v_lf, _nll(ranker, [rows[j] for j in have], role))
        score, v_is, v_lf = score.float(), v_is.float(), v_lf.float()
        idx = torch.as_tensor(have, dtype=torch.long, device=device)
        n, h = len(rows), ranker.hidden_dim
        outputs[role] = (score.new_zeros(n).index_copy(0, idx, score),
                         v_is.new_zeros(n, h).index_copy(0, idx, v_is),
                         v_lf.new_zeros(n, h).index_copy(0, idx, v_lf))
    return outputs


def _embed(ranker: StyleRanker, texts: list[str], device,
           max_length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    limit = min(max_length or ranker.max_length, getattr(ranker.encoder.config, "max_position_embeddings", 512))
    enc = ranker.tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    return ranker.embed(enc["input_ids"].to(device), enc["attention_mask"].to(device))


def _validate(ranker: StyleRanker, rows: Sequence[TrainRow], val_idx: list[int],
              features: Features | None, device) -> float | None:
    if not val_idx:
        return None
    val_rows = [rows[i] for i in val_idx]
    ranker.eval()
    if features is not None:
        with torch.no_grad():
            outputs = _cached_outputs(ranker, features, val_idx, device, rows)
        scores = {role: outputs[role][0].float().cpu().numpy() for role in ROLES}
    else:
        scores = score_rows(ranker, val_rows, device=str(device), precision="fp32")
    return pairwise_report(val_rows, scores)["pairwise_accuracy"]
