"""Interactive selection: a cut with optional per-source quotas and annotator overrides, and what it keeps.

The order of operations is fixed and recorded: (1) rank by score, (2) walk the ranking best first,
skipping rows whose source has reached its quota, until the rule's target is met (ratio/top-k: a
row count; threshold: every row scoring at least the threshold), (3) apply annotator labels:
`keep` forces a row in, `drop` forces it out, `flag` changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scar_core.select import rank_order, rule_count


@dataclass
class Curated:
    """The outcome of a cut: `kept` are input positions best first, `mask` the same as booleans."""

    rule: str
    value: float
    kept: np.ndarray
    mask: np.ndarray
    threshold: float | None
    forced_in: int = 0
    forced_out: int = 0
    quota_skipped: int = 0
    quotas: dict[str, int] = field(default_factory=dict)

    def params(self) -> dict:
        """What produced this selection, for the store and the export manifest."""
        return {"rule": self.rule, "value": self.value, "kept": int(len(self.kept)),
                "threshold_score": self.threshold, "quotas": self.quotas,
                "overrides": {"forced_in": self.forced_in, "forced_out": self.forced_out},
                "quota_skipped": self.quota_skipped}


def curate(scores: np.ndarray, rule: str, value: float, sources: np.ndarray | None = None,
           quotas: dict[str, int] | None = None, labels: np.ndarray | None = None) -> Curated:
    """Cut `scores` by rule ("ratio", "topk", "threshold") with quotas {source: max rows} and labels
    (an array of "keep"/"drop"/"flag"/None aligned with scores)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    order = rank_order(scores)
    target = rule_count(scores, rule, value)
    quotas = {str(k): int(v) for k, v in (quotas or {}).items() if v is not None}
    eligible = np.ones(n, dtype=bool)
    if quotas and sources is not None:
        ordered_sources = pd.Series(np.asarray(sources, dtype=object)[order]).fillna("(none)").astype(str)
        within = ordered_sources.groupby(ordered_sources).cumcount().to_numpy()
        caps = ordered_sources.map(quotas).fillna(np.inf).to_numpy()
        eligible = within < caps
    taken = order[eligible][:target] if rule != "threshold" else order[eligible & (scores[order] >= value)]
    base = np.zeros(n, dtype=bool)
    base[taken] = True
    quota_skipped = int((~base[order[:target]]).sum())
    mask = base.copy()
    forced_in = forced_out = 0
    if labels is not None:
        labels = np.asarray(labels, dtype=object)
        keep, drop = labels == "keep", labels == "drop"
        forced_in, forced_out = int((keep & ~base).sum()), int((drop & base).sum())
        mask = (base | keep) & ~drop
    kept = order[mask[order]]
    low = float(scores[kept].min()) if len(kept) else None
    return Curated(rule, float(value), kept, mask, low, forced_in, forced_out, quota_skipped, quotas)


def split_stats(mask: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """Rows and words kept vs dropped (a table for the Select page)."""
    mask, lengths = np.asarray(mask, dtype=bool), np.asarray(lengths, dtype=np.int64)
    rows = [("kept", int(mask.sum()), int(lengths[mask].sum())), ("dropped", int((~mask).sum()), int(lengths[~mask].sum()))]
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
