"""Score breakdown: how much of each SCAR score comes from linguistic form vs instructional surprisal.

The ranker's head scores a pair from two representations, f(v_is, v_lf) (see scar_core/ranker.py).
We treat them as the two players of a cooperative game and split each score with the Shapley
value, replacing an absent player by its data-set mean (m_is, m_lf):

    baseline = f(m_is, m_lf)                         the score of an "average" pair
    lf_contribution = ½[f(m_is, v_lf) − f(m_is, m_lf)] + ½[f(v_is, v_lf) − f(v_is, m_lf)]
    is_contribution = ½[f(v_is, m_lf) − f(m_is, m_lf)] + ½[f(v_is, v_lf) − f(m_is, v_lf)]

so that lf_contribution + is_contribution = score − baseline exactly (up to float rounding). Each
half is the average, over both orders of adding the players, of the score change when that
representation goes from the data-set average to this pair's own value. It costs four head
evaluations per row (one of them, the baseline, is shared) and no encoder pass. Caveat: the split is
between the ranker's two *representations*; v_is is computed from both texts, so it is not a
measurement of surprisal itself (scar_core.lm measures that with a language model).
A ranker with an LM term (scar_core.ranker.LMTerm) adds that term on top of f; the split covers f only.

Pass `head_score`, the head's score as the ranker computed it, when the vectors were stored at lower
precision (the store keeps them in float16): it stands in for f(v_is, v_lf), so the two parts add up
to the score the ranker gave exactly and the rounding of the stored vectors is shared between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scar_core.ranker import StyleRanker


@dataclass
class Breakdown:
    lf_contribution: np.ndarray  # (N,) float64
    is_contribution: np.ndarray  # (N,) float64
    score: np.ndarray            # (N,) float64, the head's score (`head_score` when given)
    baseline: float              # f(mean v_is, mean v_lf)


def breakdown(ranker: StyleRanker, v_is: np.ndarray, v_lf: np.ndarray, mean_is: np.ndarray | None = None,
              mean_lf: np.ndarray | None = None, chunk_rows: int = 8192,
              head_score: np.ndarray | None = None) -> Breakdown:
    """Split every score into form and surprisal contributions (see the module docstring).

    `mean_is`/`mean_lf` default to the means of the given rows; pass the whole pool's means when
    breaking down a part of it so the baseline stays the same. `head_score` replaces the head's score of
    the given vectors (see the module docstring).
    """
    device = next(ranker.output_layer.parameters()).device
    v_is = torch.as_tensor(np.asarray(v_is, np.float32), device=device)
    v_lf = torch.as_tensor(np.asarray(v_lf, np.float32), device=device)
    m_is = v_is.mean(0) if mean_is is None else torch.as_tensor(np.asarray(mean_is, np.float32), device=device)
    m_lf = v_lf.mean(0) if mean_lf is None else torch.as_tensor(np.asarray(mean_lf, np.float32), device=device)

    def head(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return ranker.score_from(a, b).float().cpu().numpy().astype(np.float64)

    base = float(head(m_is[None], m_lf[None])[0])
    parts = {"full": [], "is_only": [], "lf_only": []}
    for lo in range(0, len(v_is), chunk_rows):
        a, b = v_is[lo:lo + chunk_rows], v_lf[lo:lo + chunk_rows]
        parts["full"].append(head(a, b))
        parts["is_only"].append(head(a, m_lf.expand_as(b)))
        parts["lf_only"].append(head(m_is.expand_as(a), b))
    full, is_only, lf_only = (np.concatenate(p) if p else np.zeros(0) for p in parts.values())
    if head_score is not None:
        full = np.asarray(head_score, np.float64)
    lf = 0.5 * (lf_only - base) + 0.5 * (full - is_only)
    is_ = 0.5 * (is_only - base) + 0.5 * (full - lf_only)
    return Breakdown(lf, is_, full, base)
