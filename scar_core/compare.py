"""Compare step: how far two scorings of the same examples agree (two rankers, or one ranker at two
precisions).

Both sides are score arrays keyed by example id; only ids scored on both sides (non-NaN) are compared.
- rank correlation: Spearman's rho and Kendall's tau-b (scipy), None when either side is constant;
- top-k% overlap for k = 1..50: of the rows each side keeps at ratio k/100 (the cut of
  scar_core.select: ratio rounds up, ties keep id order), the share both keep;
- disagreements: rows ordered by how far apart their two ranks are (rank 1 is the best score; tied
  scores share their average rank, so a tie is never a disagreement).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scar_core.errors import ScarError
from scar_core.select import rank_order, rule_count

PERCENTS = tuple(range(1, 51))


@dataclass
class Comparison:
    """Two scorings over their shared examples: `example_ids` ascending, `score_a`/`score_b` aligned."""

    example_ids: np.ndarray
    score_a: np.ndarray
    score_b: np.ndarray
    spearman: float | None
    kendall: float | None
    overlap: pd.DataFrame        # k_percent, rows, shared, overlap
    disagreements: pd.DataFrame  # example_id, score_a, score_b, rank_a, rank_b, rank_difference
    only_a: int                  # examples scored on side A only
    only_b: int

    def overlap_at(self, percent: int) -> float:
        """The share of the top `percent`% that both sides keep."""
        return float(self.overlap.set_index("k_percent").loc[percent, "overlap"])

    def summary(self) -> dict:
        """Every figure as plain JSON values (the CLI's output; the page shows the same)."""
        return {"rows": int(len(self.example_ids)), "only_in_a": self.only_a, "only_in_b": self.only_b,
                "spearman": self.spearman, "kendall": self.kendall,
                "top_overlap": [{"k_percent": int(k), "rows": int(rows), "shared": int(shared), "overlap": float(share)}
                                for k, rows, shared, share in self.overlap.itertuples(index=False)],
                "disagreements": [{"example_id": int(r["example_id"]), "score_a": float(r["score_a"]),
                                   "score_b": float(r["score_b"]), "rank_a": float(r["rank_a"]),
                                   "rank_b": float(r["rank_b"]), "rank_difference": float(r["rank_difference"])}
                                  for r in self.disagreements.to_dict("records")]}


def pair_scores(ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray,
                scores_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, a, b): the example ids scored on both sides, ascending, with each side's score (float64)."""
    a = pd.Series(np.asarray(scores_a, dtype=np.float64), index=np.asarray(ids_a, dtype=np.int64)).dropna()
    b = pd.Series(np.asarray(scores_b, dtype=np.float64), index=np.asarray(ids_b, dtype=np.int64)).dropna()
    for side, series in (("A", a), ("B", b)):
        if series.index.has_duplicates:
            raise ScarError(f"side {side} scores example {series.index[series.index.duplicated()][0]} twice")
    ids = np.intersect1d(a.index.to_numpy(), b.index.to_numpy())
    return ids, a.loc[ids].to_numpy(), b.loc[ids].to_numpy()


def rank_correlations(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """(Spearman's rho, Kendall's tau-b) of two aligned score arrays; None where undefined (a constant side)."""
    def value(statistic) -> float | None:
        return None if not math.isfinite(float(statistic)) else float(statistic)

    from scipy.stats import kendalltau, spearmanr  # 0.4 s to import; only comparisons need it

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    return value(spearmanr(a, b).statistic), value(kendalltau(a, b).statistic)


def top_overlap(a: np.ndarray, b: np.ndarray, percents: tuple[int, ...] = PERCENTS) -> pd.DataFrame:
    """For each k in `percents`: how many rows the top k% holds (`rows`, rounded up as the ratio cut
    does), how many of them both sides keep (`shared`) and their share (`overlap`, 0..1)."""
    order_a, order_b = rank_order(a), rank_order(b)
    rows = []
    for k in percents:
        count = rule_count(a, "ratio", k / 100)
        shared = len(np.intersect1d(order_a[:count], order_b[:count]))
        rows.append((k, count, shared, shared / count if count else 0.0))
    return pd.DataFrame(rows, columns=["k_percent", "rows", "shared", "overlap"])


def disagreements(ids: np.ndarray, a: np.ndarray, b: np.ndarray, limit: int = 20) -> pd.DataFrame:
    """The `limit` rows whose ranks differ most (rank 1 = best score; ties share their average rank),
    largest difference first, then by example id."""
    from scipy.stats import rankdata

    rank_a, rank_b = rankdata(-np.asarray(a)), rankdata(-np.asarray(b))
    frame = pd.DataFrame({"example_id": np.asarray(ids, dtype=np.int64), "score_a": a, "score_b": b,
                          "rank_a": rank_a, "rank_b": rank_b, "rank_difference": np.abs(rank_a - rank_b)})
    frame = frame[frame["rank_difference"] > 0]
    return frame.sort_values(["rank_difference", "example_id"], ascending=[False, True],
                             kind="stable").head(limit).reset_index(drop=True)


def compare(ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray, scores_b: np.ndarray,
            limit: int = 20) -> Comparison:
    """Every figure of the module docstring for two scorings keyed by example id; `limit` caps the
    disagreement list. Fewer than two shared examples is an error naming the counts."""
    ids, a, b = pair_scores(ids_a, scores_a, ids_b, scores_b)
    scored_a, scored_b = (int((~np.isnan(np.asarray(s, dtype=np.float64))).sum()) for s in (scores_a, scores_b))
    if len(ids) < 2:
        raise ScarError(f"the two scorings share {len(ids)} scored example(s); comparing needs at least 2 "
                        f"(side A has {scored_a}, side B {scored_b})")
    spearman, kendall = rank_correlations(a, b)
    return Comparison(ids, a, b, spearman, kendall, top_overlap(a, b), disagreements(ids, a, b, limit),
                      only_a=scored_a - len(ids), only_b=scored_b - len(ids))
