"""Evidence for a cut: the same figures for the cut and its cheap alternatives of the same size.

Per subset (a `Selection`, or input positions): rows; response length (mean, median, p10, p90, in the
caller's unit); clusters touched and their share of the pool's clusters (scar_core.coverage.cluster_rows);
diversity, the mean pairwise cosine distance of the rows' v_lf over all pairs of distinct rows (exact:
with unit rows u_i, the mean pairwise cosine is (|sum u_i|^2 - sum |u_i|^2) / (m (m - 1)), so no sampling
is needed); the share of each source; the mean SCAR score; the share of its rows also in the reference
subset (by default "longest", the longest-k baseline); and, where labels are given, how many of its rows
carry a decided label (keep/drop/flag) and the share of those whose label is keep (keep-precision).
`evidence()` returns the table (one row per subset) and a JSON-able record of the same for the manifest.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from scar_core.errors import ScarError

DECIDED = ("keep", "drop", "flag")


class Evidence(NamedTuple):
    table: pd.DataFrame  # one row per subset, indexed by its name
    record: dict  # the same figures, JSON-able (NaN as None)


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean cosine distance (1 - cosine) over all pairs of distinct rows; NaN below two rows. A zero row
    counts as cosine 0 with everything."""
    x = np.asarray(vectors, dtype=np.float64)
    m = len(x)
    if m < 2:
        return math.nan
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(norms > 0, norms, 1)
    total = u.sum(axis=0)
    mean_cos = (float(total @ total) - float((u * u).sum())) / (m * (m - 1))
    return 1.0 - mean_cos


def evidence(subsets: Mapping[str, object], *, scores: np.ndarray, lengths: np.ndarray,
             vectors: np.ndarray | None = None, clusters: np.ndarray | None = None,
             sources: Sequence | None = None, labels: Sequence | None = None, pool: np.ndarray | None = None,
             reference: str = "longest", length_unit: str = "words") -> Evidence:
    """Figures per subset ({name: Selection or input positions}); every array aligns with `scores`.
    `clusters` per row (-1: none) and `pool` (the eligible rows, for the pool's cluster count; default all
    rows) give clusters touched; `vectors` (v_lf) the diversity; `sources` the source mix; `labels` the
    decided label per row ("keep"/"drop"/"flag"/None) keep-precision. A figure whose input is missing is None."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    lengths = np.asarray(lengths, dtype=np.float64)
    for name, array in (("lengths", lengths), ("vectors", vectors), ("clusters", clusters), ("sources", sources),
                        ("labels", labels), ("pool", pool)):
        if array is not None and len(array) != n:
            raise ScarError(f"{len(array)} {name} for {n} rows")
    positions = {name: np.asarray(getattr(s, "kept", s), dtype=np.int64) for name, s in subsets.items()}
    pool = np.ones(n, dtype=bool) if pool is None else np.asarray(pool, dtype=bool)
    clusters = None if clusters is None else np.asarray(clusters, dtype=np.int64)
    pool_clusters = None if clusters is None else len(np.unique(clusters[pool & (clusters >= 0)]))
    sources = None if sources is None else pd.Series(np.asarray(sources, dtype=object)).fillna("(none)").astype(str).to_numpy()
    labels = None if labels is None else np.asarray(labels, dtype=object)
    ref = positions.get(reference)
    rows = {}
    for name, kept in positions.items():
        fig: dict = {"rows": len(kept)}
        size = lengths[kept]
        fig.update({f"length {q}": (float(f(size)) if len(kept) else None) for q, f in
                    (("mean", np.mean), ("median", np.median), ("p10", lambda v: np.percentile(v, 10)),
                     ("p90", lambda v: np.percentile(v, 90)))})
        if clusters is not None:
            touched = len(np.unique(clusters[kept][clusters[kept] >= 0]))
            fig["clusters touched"] = touched
            fig["cluster share"] = touched / pool_clusters if pool_clusters else None
        fig["diversity"] = None if vectors is None else _none(mean_pairwise_distance(np.asarray(vectors)[kept]))
        fig["mean score"] = float(scores[kept].mean()) if len(kept) else None
        fig[f"overlap with {reference}"] = (len(np.intersect1d(kept, ref)) / len(kept)
                                            if ref is not None and len(kept) else None)
        if labels is not None:
            decided = np.isin(labels[kept], DECIDED)
            fig["labelled"] = int(decided.sum())
            fig["keep precision"] = float((labels[kept] == "keep").sum() / decided.sum()) if decided.any() else None
        if sources is not None:
            names, counts = np.unique(sources[kept], return_counts=True)
            fig["sources"] = {str(s): float(c / len(kept)) for s, c in zip(names, counts)}
        rows[name] = fig
    table = pd.DataFrame.from_dict({name: {k: v for k, v in fig.items() if k != "sources"}
                                    for name, fig in rows.items()}, orient="index")
    if sources is not None:
        mix = pd.DataFrame.from_dict({name: fig["sources"] for name, fig in rows.items()}, orient="index")
        table = table.join(mix.reindex(columns=sorted(mix.columns)).fillna(0.0).add_prefix("source: "))
    table.index.name = "subset"
    record = {"pool": {"rows": int(pool.sum()), "clusters": pool_clusters}, "length_unit": length_unit,
              "reference": reference, "diversity": "mean pairwise cosine distance of v_lf (exact)",
              "subsets": rows}
    return Evidence(table, record)


def _none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
