"""Matched baselines: cheap subsets of the same size as a cut, to show whether the cut beats them.

For a cut of k rows (a `scar_core.select.Selection`) each baseline keeps exactly k rows chosen another
way, under the cut's own rule in every other respect (scar_core.select.select walked with a `priority`):

- "random": the eligible rows in a seeded random order;
- "longest": the longest responses first (ties in input order); `lengths` come from the caller
  (words or tokens: say which in `length_unit`);
- "length-matched": a seeded random draw with the cut's response-length distribution. The cut's lengths
  are split into (at most `bins`, default 10) quantile bins, edges from the cut's shortest to its longest
  response (equal edges merged; a length on an inner edge belongs to the bin above it). For each bin the
  draw takes as many random eligible rows of that length range as the cut has in it, less the rows a
  label forces into that bin; rows outside the cut's length range are drawn only if quotas leave the
  bins short.

What is the same as the cut: the eligible pool (`cut.pool`: cleaning already applied), the per-source
quotas of the walk (`cut.quotas`; pass the same `sources`) and the labels (pass the same per-row
decided `labels` the cut was given): a row labelled keep is in every baseline, one labelled drop in none.
How exactly k rows come out: the walk's rows that carry no keep/drop label are counted until, with every
keep row, they make k (`walked` in the params: the top-k value the walk used). Rows labelled drop are
walked last, so they never take a quota's place. Should quotas leave too few rows, the baseline keeps
what there is and says how many it lacks (`short`).

Each result is a `Selection` like the cut's: `kept` best score first (as exports write rows) and
`params()`, whose "ordering" records the baseline (kind, seed, k, walked, short, length unit, bins); the
same seed and inputs give the same rows.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from scar_core.errors import ScarError
from scar_core.select import Selection, rank_order, select

KINDS = ("random", "longest", "length-matched")
DEFAULT_BINS = 10


def baseline(cut: Selection, scores: np.ndarray, kind: str, *, lengths: np.ndarray | None = None,
             sources: np.ndarray | None = None, labels: np.ndarray | None = None, seed: int = 0,
             bins: int = DEFAULT_BINS, length_unit: str = "words") -> Selection:
    """A baseline of `kind` ("random", "longest", "length-matched") with as many rows as `cut`. Arrays
    align with `scores` (the scores the cut was made from): `lengths` response lengths (needed by
    "longest" and "length-matched"), `sources` and `labels` as given to the cut's `select`."""
    if kind not in KINDS:
        raise ScarError(f"unknown baseline '{kind}'; choose one of {', '.join(KINDS)}")
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if len(cut.pool) != n:
        raise ScarError(f"{n} scores for a cut over {len(cut.pool)} rows")
    if cut.labels_applied and labels is None:
        raise ScarError("the cut applied labels: pass the same labels to its baselines")
    if cut.quotas and sources is None:
        raise ScarError("the cut has per-source quotas: pass the rows' sources to its baselines")
    if kind != "random":
        if lengths is None:
            raise ScarError(f"the '{kind}' baseline needs response lengths")
        lengths = np.asarray(lengths, dtype=np.float64)
        if len(lengths) != n:
            raise ScarError(f"{len(lengths)} lengths for {n} rows")
    k = len(cut.kept)
    keep = drop = np.zeros(n, dtype=bool)
    if labels is not None:
        labels = np.asarray(labels, dtype=object)
        keep, drop = (labels == "keep") & cut.pool, (labels == "drop") & cut.pool
    rng = np.random.default_rng(seed)
    ordering: dict = {"baseline": kind, "seed": None if kind == "longest" else seed, "k": k}
    if kind == "random":
        priority = rng.random(n)
    elif kind == "longest":
        priority = lengths.copy()
        ordering["lengths"] = length_unit
    else:
        priority, bin_info = _length_matched(cut, lengths, keep, drop, rng, bins)
        ordering.update(lengths=length_unit, **bin_info)
    priority[drop] = -np.inf  # walked last: a row that will be forced out never takes a quota's place
    return _exactly(cut, scores, priority, k, keep, drop, sources, labels, ordering)


def baselines(cut: Selection, scores: np.ndarray, lengths: np.ndarray, *, sources: np.ndarray | None = None,
              labels: np.ndarray | None = None, seed: int = 0, bins: int = DEFAULT_BINS,
              length_unit: str = "words") -> dict[str, Selection]:
    """All three baselines of `cut`, by kind (same arguments as `baseline`)."""
    return {kind: baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels, seed=seed,
                           bins=bins, length_unit=length_unit) for kind in KINDS}


def length_bins(cut_lengths: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin edges: quantiles of the cut's lengths at 0, 1/b, ..., 1 with b = min(bins, rows), equal edges merged."""
    cut_lengths = np.asarray(cut_lengths, dtype=np.float64)
    b = max(1, min(int(bins), len(cut_lengths)))
    return np.unique(np.quantile(cut_lengths, np.linspace(0, 1, b + 1)))


def bin_of(lengths: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per row, its bin (0 .. len(edges) - 2; one bin when there is one edge), -1 outside [edges[0], edges[-1]]."""
    lengths = np.asarray(lengths, dtype=np.float64)
    count = max(len(edges) - 1, 1)
    index = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, count - 1)
    return np.where((lengths >= edges[0]) & (lengths <= edges[-1]), index, -1)


def _length_matched(cut: Selection, lengths: np.ndarray, keep: np.ndarray, drop: np.ndarray,
                    rng: np.random.Generator, bins: int) -> tuple[np.ndarray, dict]:
    """Priority of a stratified draw: 1 + u for the rows drawn in each bin, u for the rest (u uniform)."""
    n = len(lengths)
    u = rng.random(n)
    if not len(cut.kept):
        return u, {"bins": [], "per_bin": []}
    edges = length_bins(lengths[cut.kept], bins)
    where = bin_of(lengths, edges)
    count = max(len(edges) - 1, 1)
    in_cut = np.bincount(where[cut.kept], minlength=count)
    forced = np.bincount(where[keep], minlength=count) if keep.any() else np.zeros(count, dtype=np.int64)
    drawn = np.zeros(n, dtype=bool)
    free = cut.pool & ~keep & ~drop
    for b in range(count):
        rows = np.flatnonzero(free & (where == b))
        rows = rows[rank_order(u[rows])]
        drawn[rows[:max(int(in_cut[b] - forced[b]), 0)]] = True
    priority = u + (drawn | keep)
    return priority, {"method": "stratified by the cut's length quantiles", "bins": [float(e) for e in edges],
                      "per_bin": [int(c) for c in in_cut]}


def _exactly(cut: Selection, scores: np.ndarray, priority: np.ndarray, k: int, keep: np.ndarray,
             drop: np.ndarray, sources, labels, ordering: dict) -> Selection:
    """The cut's rule walked by `priority` far enough that, with the labels applied, it keeps k rows."""
    pool = np.flatnonzero(cut.pool)
    scores = np.where(cut.pool, scores, np.nan)  # eligibility is the cut's pool, nothing else
    common = dict(sources=sources, quotas=cut.quotas or None, priority=priority)
    walkable = np.zeros(len(scores), dtype=bool)
    if len(pool):
        walkable = select(scores, "topk", len(pool), **common).mask  # every row the quotas let the walk take
    order = pool[rank_order(priority[pool])]
    walk = order[walkable[order]]
    need = k - int(keep.sum())
    counted = np.cumsum(~keep[walk] & ~drop[walk])
    short = max(need - int(counted[-1] if len(counted) else 0), 0)
    walked = 0 if need <= 0 else (len(walk) if short else int(np.searchsorted(counted, need)) + 1)
    ordering = {**ordering, "walked": walked, "short": short}
    if walked:
        chosen = select(scores, "topk", walked, labels=labels, **common)
    else:  # every row of the cut is forced in by a label: the walk takes none
        by_score = pool[rank_order(scores[pool])]
        kept = by_score[keep[by_score]]
        chosen = Selection("topk", 0.0, kept, keep.copy(), float(scores[kept].min()) if len(kept) else None,
                           cut.pool.copy(), forced_in=len(kept), quotas=cut.quotas, labels_applied=labels is not None)
    if len(chosen.kept) != k - short:
        raise AssertionError(f"baseline kept {len(chosen.kept)} rows, not {k - short}")
    return replace(chosen, left_out=cut.left_out, keep_flagged=cut.keep_flagged, label_policy=cut.label_policy,
                   ordering=ordering)
