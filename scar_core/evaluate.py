"""Evaluate a ranker on training-style rows: pairwise accuracy over every available ordered pair.

A pair is (better, worse) in SCAR's order direct > referenced > human; it counts when both
responses are present and their texts differ. The ranker is right when it scores the better
response strictly higher. Next to it: the trivial baseline "the longer response (in characters)
wins" (a tie counts as half right), and a length-controlled view: the ranker's accuracy on pairs
where the better response is the longer one and where it is not, and their mean, on which the
length baseline scores about 0.5 by construction.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from scar_core.ranker import StyleRanker
from scar_core.training_data import PAIR_NAMES, ROLES, TrainRow

if TYPE_CHECKING:
    from scar_core.engine import Engine
    from scar_core.score import Progress


def score_rows(ranker: StyleRanker, rows: Sequence[TrainRow], engine: Engine | None = None,
               progress: Progress | None = None, **options) -> dict[str, np.ndarray]:
    """role -> (len(rows),) scores, NaN where the row lacks that response, scored by `engine` (default: the
    torch engine with `options`: device, precision, batch_size)."""
    from scar_core.engine import TorchEngine

    engine = engine or TorchEngine(ranker, **options)
    keys = [(i, role) for i, row in enumerate(rows) for role in ROLES if role in row.responses]
    scores = engine.score([rows[i].instruction for i, _ in keys], [rows[i].responses[role] for i, role in keys],
                          progress=progress).score
    out = {role: np.full(len(rows), np.nan, np.float32) for role in ROLES}
    for (i, role), s in zip(keys, scores):
        out[role][i] = s
    return out


def pairwise_report(rows: Sequence[TrainRow], scores: dict[str, np.ndarray]) -> dict:
    """Accuracy figures of `scores` (role -> per-row scores) on every available pair of `rows`."""
    ranker_right, length_right, better_longer, pair_type, source = [], [], [], [], []
    for i, row in enumerate(rows):
        for better, worse in row.pairs():
            a, b = len(row.responses[better]), len(row.responses[worse])
            ranker_right.append(float(scores[better][i] > scores[worse][i]))
            length_right.append(1.0 if a > b else 0.5 if a == b else 0.0)
            better_longer.append(a > b)
            pair_type.append(PAIR_NAMES[(better, worse)])
            source.append(row.source or "")
    r, ln = np.array(ranker_right), np.array(length_right)
    longer, kinds, sources = np.array(better_longer, bool), np.array(pair_type), np.array(source)
    report = {"n_rows": len(rows), "n_pairs": len(r), "pairwise_accuracy": _mean(r),
              "pair_types": {k: {"accuracy": _mean(r[kinds == k]), "n_pairs": int((kinds == k).sum())}
                             for k in PAIR_NAMES.values()},
              "length_baseline": {"pairwise_accuracy": _mean(ln),
                                  "pair_types": {k: _mean(ln[kinds == k]) for k in PAIR_NAMES.values()}},
              "length_controlled": {
                  "better_longer": {"accuracy": _mean(r[longer]), "n_pairs": int(longer.sum())},
                  "better_not_longer": {"accuracy": _mean(r[~longer]), "n_pairs": int((~longer).sum())},
                  "balanced_accuracy": _balanced(r, longer),
                  "length_baseline_balanced_accuracy": _balanced(ln, longer)},
              "by_source": {s: {"accuracy": _mean(r[sources == s]), "n_pairs": int((sources == s).sum()),
                                "length_baseline": _mean(ln[sources == s])}
                            for s in sorted(set(source))}}
    return report


def evaluate(ranker: StyleRanker, rows: Sequence[TrainRow], **options) -> dict:
    """Score every response of `rows` with `ranker` and report pairwise accuracy (see pairwise_report)."""
    return pairwise_report(rows, score_rows(ranker, rows, **options))


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def _balanced(right: np.ndarray, longer: np.ndarray) -> float | None:
    if not longer.any() or longer.all():
        return None
    return round((float(right[longer].mean()) + float(right[~longer].mean())) / 2, 4)
