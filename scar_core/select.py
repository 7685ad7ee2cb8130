"""Select step: cut a ranked pool by ratio, top-k or score threshold."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scar_core.errors import ScarError


@dataclass
class Cut:
    """What a cut kept: `kept` are input positions, best first; `threshold` the lowest kept score."""

    rule: str
    value: float
    kept: np.ndarray
    threshold: float | None

    def params(self) -> dict:
        return {"rule": self.rule, "value": self.value, "kept": int(len(self.kept)),
                "threshold_score": self.threshold}


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Input positions from best to worst score; ties keep input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


RULES = ("ratio", "topk", "threshold")


def rule_count(scores: np.ndarray, rule: str, value: float) -> int:
    """How many of the best rows a rule keeps, after checking its value: ratio rounds up, top-k
    is a count, threshold keeps every row scoring at least `value`."""
    if rule == "ratio":
        if not 0 < value <= 1:
            raise ScarError(f"ratio must be in (0, 1], got {value}")
        return math.ceil(len(scores) * value)
    if rule == "topk":
        if value < 1 or int(value) != value:
            raise ScarError(f"top-k must be a positive whole number, got {value}")
        return int(value)
    if rule == "threshold":
        if not math.isfinite(value):
            raise ScarError(f"threshold must be a finite number, got {value}")
        return int((np.asarray(scores, dtype=np.float64) >= value).sum())
    raise ScarError(f"unknown rule '{rule}'; choose one of {', '.join(RULES)}")


def cut(scores: np.ndarray, ratio: float | None = None, topk: int | None = None,
        threshold: float | None = None) -> Cut:
    """Keep the best `ratio` of rows (rounded up), the best `topk`, or every row scoring >= `threshold`."""
    given = [(n, v) for n, v in (("ratio", ratio), ("topk", topk), ("threshold", threshold)) if v is not None]
    if len(given) != 1:
        raise ScarError("give exactly one of --ratio, --topk or --threshold")
    rule, value = given[0]
    scores = np.asarray(scores, dtype=np.float64)
    kept = rank_order(scores)[: rule_count(scores, rule, value)]
    low = float(scores[kept[-1]]) if len(kept) else None
    return Cut(rule, float(value), kept, low)
