"""Select step: the one selection rule, used alike by the CLI's `rank` and the app's Select page.

The order of operations is fixed and recorded in `Selection.params()`:
1. Eligibility: a row needs a score. Unless `keep_flagged`, rows flagged for language are left out,
   and each duplicate cluster keeps only one member, its best-scored one (scar_core.clean.duplicate_of;
   decided here, after scoring, so the CLI and the app keep the same copy).
2. The cut walks the eligible rows best first (ties keep input order), skipping rows whose source
   has reached its quota, until the rule's target is met: `ratio` of the eligible rows (rounded up,
   so a non-empty pool keeps at least one), the best `topk`, or every row scoring >= `threshold`.
3. Annotator labels, one per row as the label policy decided it (scar_core.labels.resolve): among
   eligible rows, `keep` forces a row in, `drop` forces it out, `flag` and unresolved rows change nothing.

An optional `priority` (one number per row, higher first, ties in input order) replaces the score as the
order of step 2's walk: the matched baselines (scar_core.baselines) and the coverage-aware cut
(scar_core.coverage) are this same rule walked in another order. Everything else is unchanged: a
threshold still compares scores (so it keeps the same rows unless quotas bind), and `kept` is still best
score first. What made the priority is recorded in `Selection.ordering` (params' "ordering").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scar_core.clean import duplicate_of
from scar_core.errors import ScarError

RULES = ("ratio", "topk", "threshold")


@dataclass
class Selection:
    """What a selection kept: `kept` are input positions, best first; `mask` the same as booleans;
    `pool` the rows that were eligible (step 1)."""

    rule: str
    value: float
    kept: np.ndarray
    mask: np.ndarray
    threshold: float | None
    pool: np.ndarray  # the eligible rows, as booleans
    left_out: dict[str, int] = field(default_factory=dict)
    forced_in: int = 0
    forced_out: int = 0
    quota_skipped: int = 0
    quotas: dict[str, int] = field(default_factory=dict)
    keep_flagged: bool = False
    labels_applied: bool = False
    label_policy: dict | None = None  # scar_core.labels.label_summary of the labels applied
    ordering: dict | None = None  # what made the walk's `priority` (None: the scores), e.g. Coverage.params()
    blend: dict | None = None  # the weights and signals the cut's scores were blended from (scar_core.signals)

    @property
    def eligible(self) -> int:
        return int(self.pool.sum())

    def params(self) -> dict:
        """What produced this selection, for the store and the export manifest."""
        return {"rule": self.rule, "value": self.value, "kept": int(len(self.kept)),
                "threshold_score": self.threshold, "pool": self.eligible, "left_out": self.left_out,
                "keep_flagged": self.keep_flagged, "labels_applied": self.labels_applied, "quotas": self.quotas,
                "overrides": {"forced_in": self.forced_in, "forced_out": self.forced_out},
                "quota_skipped": self.quota_skipped, "labels": self.label_policy,
                **({"ordering": self.ordering} if self.ordering is not None else {}),
                **({"blend": self.blend} if self.blend is not None else {})}


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Input positions from best to worst score; ties keep input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


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


def eligible_rows(scores: np.ndarray, clusters: np.ndarray | None = None, left_out_by: np.ndarray | None = None,
                  keep_flagged: bool = False) -> tuple[np.ndarray, dict[str, int]]:
    """(mask of the rows a cut may take, how many were left out and why): step 1 of the module docstring.
    `left_out_by` names, per row, the cleaning flag that leaves it out whatever its score ("language", "echo",
    "empty", "refusal"; None or NaN: none; CleanReport.left_out_by, scar_core.clean.left_out_kind). Kinds
    other than language are counted only when present."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    scored = ~np.isnan(scores)
    if keep_flagged:
        return scored, {"unscored": int((~scored).sum())}
    by = np.full(n, None, dtype=object) if left_out_by is None else np.asarray(left_out_by, dtype=object)
    flagged = np.array([isinstance(kind, str) for kind in by], dtype=bool)
    duplicate = np.zeros(n, bool) if clusters is None else duplicate_of(clusters, scores, flagged) >= 0
    left_out = {"language": int((by == "language").sum()),
                **{kind: int((by == kind).sum()) for kind in sorted(set(by[flagged]) - {"language"})},
                "duplicate": int((~flagged & duplicate).sum()), "unscored": int((~scored & ~flagged & ~duplicate).sum())}
    return scored & ~flagged & ~duplicate, left_out


def select(scores: np.ndarray, rule: str, value: float, *, clusters: np.ndarray | None = None,
           left_out_by: np.ndarray | None = None, sources: np.ndarray | None = None,
           quotas: dict[str, int] | None = None, labels: np.ndarray | None = None,
           keep_flagged: bool = False, priority: np.ndarray | None = None) -> Selection:
    """Select rows by `rule` ("ratio", "topk", "threshold") and `value`, in the order of the module
    docstring. Arrays align with `scores` (NaN: not scored): `clusters` numbers duplicate clusters
    (-1: none), `left_out_by` names the flag leaving a row out (eligible_rows), `sources` each row's source for
    `quotas` {source: most rows kept}, `labels` holds "keep"/"drop"/"flag"/None per row, `priority` the
    order the cut walks the eligible rows in (higher first; None: by score)."""
    scores = np.asarray(scores, dtype=np.float64)
    eligible, left_out = eligible_rows(scores, clusters, left_out_by, keep_flagged)
    pool = np.flatnonzero(eligible)
    by_score = pool[rank_order(scores[pool])]
    if priority is None:
        order = by_score
    else:
        priority = np.asarray(priority, dtype=np.float64)
        if priority.shape != scores.shape or np.isnan(priority[pool]).any():
            raise ScarError("priority needs one number per row (no NaN among the eligible rows)")
        order = pool[rank_order(priority[pool])]
    target = rule_count(scores[pool], rule, value)
    # the rows the rule would take without quotas, in walking order: a threshold's are those scoring >= value
    candidates = order[scores[order] >= value] if rule == "threshold" else order
    quotas = {str(k): int(v) for k, v in (quotas or {}).items() if v is not None}
    within_quota = np.ones(len(candidates), dtype=bool)
    if quotas and sources is not None:
        ordered = pd.Series(np.asarray(sources, dtype=object)[candidates]).fillna("(none)").astype(str)
        within_quota = ordered.groupby(ordered).cumcount().to_numpy() < ordered.map(quotas).fillna(np.inf).to_numpy()
    taken = candidates[within_quota][:target]
    base = np.zeros(len(scores), dtype=bool)
    base[taken] = True
    mask = base.copy()
    forced_in = forced_out = 0
    if labels is not None:
        labels = np.asarray(labels, dtype=object)
        keep, drop = (labels == "keep") & eligible, (labels == "drop") & eligible
        forced_in, forced_out = int((keep & ~base).sum()), int((drop & base).sum())
        mask = (base | keep) & ~drop
    kept = by_score[mask[by_score]]
    low = float(scores[kept].min()) if len(kept) else None
    return Selection(rule, float(value), kept, mask, low, eligible, left_out, forced_in, forced_out,
                     int((~base[candidates[:target]]).sum()), quotas, keep_flagged, labels is not None)


def cut(scores: np.ndarray, ratio: float | None = None, topk: int | None = None,
        threshold: float | None = None) -> Selection:
    """Keep the best `ratio` of rows (rounded up), the best `topk`, or every row scoring >= `threshold`
    (a plain cut: `select` without cleaning, quotas or labels)."""
    return select(scores, *rule_of(ratio, topk, threshold))


def rule_of(ratio: float | None = None, topk: int | None = None, threshold: float | None = None) -> tuple[str, float]:
    """(rule, value) from exactly one of ratio, top-k and threshold."""
    given = [(n, v) for n, v in (("ratio", ratio), ("topk", topk), ("threshold", threshold)) if v is not None]
    if len(given) != 1:
        raise ScarError("give exactly one of --ratio, --topk or --threshold")
    return given[0]


def around_cut(chosen: Selection, scores: np.ndarray, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(just above, just below) the cut line: input positions of the `n` lowest-scored kept rows and of
    the `n` best-scored eligible rows left out, each best first."""
    scores = np.asarray(scores, dtype=np.float64)
    pool = np.flatnonzero(chosen.pool)
    order = pool[rank_order(scores[pool])]
    return chosen.kept[-n:] if n else chosen.kept[:0], order[~chosen.mask[order]][:n]


def rule_value_at(rule: str, kept_ratio: float, pool_scores: np.ndarray) -> float:
    """The value of `rule` that keeps the best `kept_ratio` of the eligible rows (`pool_scores`): a point
    of the threshold curve read as a ratio, a top-k count or the lowest kept score."""
    scores = np.sort(np.asarray(pool_scores, dtype=np.float64))[::-1]
    if not len(scores):
        raise ScarError("no eligible rows to cut")
    k = min(len(scores), max(1, round(kept_ratio * len(scores))))
    if rule == "ratio":
        return k / len(scores)
    if rule == "topk":
        return float(k)
    if rule == "threshold":
        return float(scores[k - 1])
    raise ScarError(f"unknown rule '{rule}'; choose one of {', '.join(RULES)}")


def split_stats(mask: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """Rows and words kept vs dropped (a table for the Select page)."""
    mask, lengths = np.asarray(mask, dtype=bool), np.asarray(lengths, dtype=np.int64)
    rows = [("kept", int(mask.sum()), int(lengths[mask].sum())),
            ("dropped", int((~mask).sum()), int(lengths[~mask].sum()))]
    table = pd.DataFrame(rows, columns=["", "rows", "response words"]).set_index("")
    total = max(len(mask), 1)
    table["share of rows"] = (table["rows"] / total).map("{:.1%}".format)
    return table


def rank_and_percentile(scores: np.ndarray, values: list[float]) -> list[tuple[int, float]]:
    """(rank, percentile) of each value among `scores`: rank 1 is the best, percentile 100 the best."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    n = max(len(ordered), 1)
    out = []
    for v in values:
        at_or_below = int(np.searchsorted(ordered, v, side="right"))
        out.append((len(ordered) - at_or_below + 1, 100.0 * at_or_below / n))
    return out
