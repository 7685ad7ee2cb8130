"""Coverage-aware cut: fill the cut best first while spreading it over the pool's kinds of response.

One number, `coverage` in [0, 1], goes from pure score (0: today's cut, the same rows in the same order)
to score and coverage alike (1: every cluster gives the cut its share). The result is a `priority` for
`scar_core.select.select`, so cleaning, quotas and labels apply as to any cut; a threshold keeps the
same rows whatever the priority (unless quotas bind), so coverage acts on ratio and top-k cuts.

How:
1. Cluster the eligible rows' response embeddings (the ranker's `v_lf`, scaled to unit length so
   distance is cosine distance) with seeded k-means (scikit-learn `KMeans`; `MiniBatchKMeans` above
   20,000 rows). The number of clusters is round(sqrt(n / 2)) of the n eligible rows, clipped to
   [2, 100] (and at most n): 2,000 rows make 32 clusters, 20,000 or more make 100.
2. Per-cluster quotas in proportion to cluster size, rounded up, blended with the score: among the n
   eligible rows a row whose score ranks r (0 is the best) and ranks j within its cluster of size m gets
   the key

       (1 - coverage) * (r + 0.5) / n  +  coverage * j / m

   and the cut walks the keys smallest first (equal keys: better score first). At coverage 0 that is the
   score order. At 1 a cut of a fraction f of the pool takes about the best ceil(f * m) rows of every
   cluster: each cluster's best row comes first, so every cluster is touched once the cut has as many
   rows as there are clusters, and a topic that holds all the top scores no longer fills the whole cut. In between, a cluster's best row comes in when its score rank is good
   enough, and the bigger clusters give more rows. The keys do not depend on the cut's size: one
   priority serves every ratio and top-k, and moving a slider re-walks it without new work.

Why this method. Measured on 400-pair samples of Dolly, Alpaca, LIMA and ShareGPT (the default
ranker, a 10% cut of 40 rows, 14 clusters) against (b) a greedy facility-location objective blended
with the score: each step takes the row with the best (1 - coverage) * score percentile + coverage *
facility-location gain over the pool's rows (gain scaled so the step's best is 1). At coverage 0.5
this method touched 1-3 more clusters than the plain cut (7/8/10/9 -> 8/11/11/10) for 0.4-1.5% of its
mean score; (b) touched 0-4 more (9/12/10/9) for 3-20% of it (Dolly: 1.067 plain, 1.055 here, 0.855
(b), 0.093 the random baseline), with more diversity (mean pairwise cosine distance of v_lf 0.225
against 0.196 on Dolly). At coverage 1 this method touched all 14 clusters in every pool at 8-15% of
the mean score, while (b) fell to about the random baseline's mean score or below it in all four. (b)'s order
also depends on the cut's size and costs O(rows x clients) per row taken. Quotas rounded to the
nearest row (key (j + 0.5) / m) were measured too and dropped: with k-means' very unequal clusters on
v_lf (one cluster often holds half the pool) a cluster of fewer than 1 / (2f) rows never reaches the
cut, and on LIMA coverage 0.5 touched fewer clusters than the plain cut (7 against 10).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scar_core.errors import ScarError
from scar_core.select import Selection, eligible_rows, rank_order, select

EMBEDDING = "v_lf"
METHOD = "cluster-proportional quotas, rounded up"
MINIBATCH_ABOVE = 20_000


@dataclass
class Coverage:
    """A coverage-aware walking order: `priority` per input row for select() (higher first; -inf for rows
    outside the pool), `clusters` per input row (-1 outside the pool) and their number `k`."""

    priority: np.ndarray
    clusters: np.ndarray
    k: int
    coverage: float
    seed: int

    def params(self) -> dict:
        """What made this order, for the manifest (Selection.ordering)."""
        return {"coverage": self.coverage, "method": METHOD, "clusters": self.k, "seed": self.seed,
                "embedding": EMBEDDING}


def cluster_count(n: int) -> int:
    """round(sqrt(n / 2)) clipped to [2, 100], and never more than the n rows."""
    return int(min(max(round(math.sqrt(n / 2)), 2), 100, max(n, 1)))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def cluster_rows(vectors: np.ndarray, pool: np.ndarray | None = None, k: int | None = None,
                 seed: int = 0) -> tuple[np.ndarray, int]:
    """(cluster per row, -1 outside `pool`; the number of clusters): seeded k-means of the pool's rows
    scaled to unit length, `k` clusters (default `cluster_count` of the pool's size)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ScarError(f"embeddings must be a table of rows (N x H), got shape {vectors.shape}")
    pool = np.ones(len(vectors), dtype=bool) if pool is None else np.asarray(pool, dtype=bool)
    rows = np.flatnonzero(pool)
    labels = np.full(len(vectors), -1, dtype=np.int64)
    if not len(rows):
        return labels, 0
    k = cluster_count(len(rows)) if k is None else int(k)
    if not 1 <= k <= len(rows):
        raise ScarError(f"cannot make {k} clusters of {len(rows)} rows")
    if k == 1:
        labels[rows] = 0
        return labels, 1
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = unit_rows(vectors[rows])
    if len(rows) > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, batch_size=4096, n_init=1)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=1)
    labels[rows] = model.fit_predict(x)
    return labels, k


def coverage_order(scores: np.ndarray, vectors: np.ndarray | None, coverage: float, *,
                   pool: np.ndarray | None = None, clusters: np.ndarray | None = None, k: int | None = None,
                   seed: int = 0) -> Coverage:
    """The walking order for a cut at `coverage` (module docstring). `scores` and `vectors` (v_lf, N x H)
    align by row; `pool` marks the eligible rows (a Selection's `pool`; default: the scored rows).
    Pass `clusters` (per row, as `cluster_rows` returns) to reuse a clustering; `vectors` is then unused."""
    if not 0 <= coverage <= 1:
        raise ScarError(f"coverage must be in [0, 1], got {coverage}")
    scores = np.asarray(scores, dtype=np.float64)
    pool = ~np.isnan(scores) if pool is None else np.asarray(pool, dtype=bool) & ~np.isnan(scores)
    if clusters is None:
        if vectors is None:
            raise ScarError("coverage needs the rows' v_lf embeddings or their clusters")
        if len(vectors) != len(scores):
            raise ScarError(f"{len(vectors)} embeddings for {len(scores)} scores")
        clusters, k = cluster_rows(vectors, pool, k, seed)
    else:
        clusters = np.where(pool, np.asarray(clusters, dtype=np.int64), -1)
        if (clusters[pool] < 0).any():
            raise ScarError("every eligible row needs a cluster")
        k = len(np.unique(clusters[pool]))
    rows = np.flatnonzero(pool)
    order = rows[rank_order(scores[rows])]  # best first, ties in input order
    n = len(order)
    score_rank = np.arange(n)
    member = clusters[order]
    size = np.bincount(member, minlength=member.max() + 1 if n else 0)
    first = np.zeros_like(member)
    if n:  # rank within the cluster: how many of its rows come earlier in score order
        by_cluster = np.argsort(member, kind="stable")
        starts = np.r_[0, np.cumsum(size)[:-1]]
        first[by_cluster] = np.arange(n) - np.repeat(starts, size)
    key = (1 - coverage) * (score_rank + 0.5) / max(n, 1) + coverage * first / np.maximum(size[member], 1)
    walk = np.lexsort((score_rank, key))  # smallest key first; equal keys by score
    priority = np.full(len(scores), -np.inf)
    priority[order[walk]] = np.arange(n, 0, -1, dtype=np.float64)  # n for the first row walked, 1 for the last
    return Coverage(priority, clusters, int(k), float(coverage), int(seed))


def covered_cut(scores: np.ndarray, rule: str, value: float, coverage: float, *, vectors: np.ndarray | None = None,
                groups: np.ndarray | None = None, k: int | None = None, seed: int = 0,
                **rule_options) -> tuple[Selection, Coverage | None]:
    """`scar_core.select.select` at `coverage` (0: the plain cut): the walk's priority spreads the cut over
    k-means `groups` of the eligible rows (computed from `vectors` when not given), and the Selection
    records how (its `ordering`). `rule_options` are select's (clusters of duplicates, left_out_by,
    quotas, labels, ...). Returns the cut and the Coverage it used (None at 0), so callers can reuse its
    clusters."""
    if coverage <= 0:
        return select(scores, rule, value, **rule_options), None
    pool = eligible_rows(scores, rule_options.get("clusters"), rule_options.get("left_out_by"),
                         rule_options.get("keep_flagged", False))[0]
    spread = coverage_order(scores, vectors, coverage, pool=pool, clusters=groups, k=k, seed=seed)
    chosen = select(scores, rule, value, priority=spread.priority, **rule_options)
    chosen.ordering = spread.params()
    return chosen, spread
