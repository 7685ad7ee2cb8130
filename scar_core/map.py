"""Map step: 2-D coordinates of every example in the form space (v_lf) and the surprisal space (v_is).

Each space is standardised per dimension, reduced to at most 50 dimensions with PCA, its nearest
neighbours found exactly with scikit-learn and handed to UMAP as `precomputed_knn` (measured faster
than UMAP's own search, see /work/shared/ENVIRONMENT.md), and embedded with a fixed seed, so the
same vectors always give the same map. UMAP needs a neighbourhood graph, so below MIN_UMAP_ROWS
rows the map is the first two principal components instead (`method` says which was used).
The first UMAP call in a process pays numba's compilation (about 30 s on a laptop-class CPU).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MIN_UMAP_ROWS = 15
PCA_DIMS = 50


@dataclass
class StyleMap:
    lf: np.ndarray  # (N, 2) float32, map of the linguistic-form space
    is_: np.ndarray  # (N, 2) float32, map of the instructional-surprisal space
    method: str     # "umap" or "pca"


def project(vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> tuple[np.ndarray, str]:
    """(N, 2) coordinates of the rows of `vectors` and the method used ("umap" or "pca")."""
    from sklearn.decomposition import PCA

    x = np.asarray(vectors, np.float64)
    n = len(x)
    if n < 2:
        return np.zeros((n, 2), np.float32), "pca"
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    dims = min(PCA_DIMS if n >= MIN_UMAP_ROWS else 2, n, x.shape[1])
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(x) if dims > 0 else np.zeros((n, 0))
    if n < MIN_UMAP_ROWS:
        out = np.zeros((n, 2))
        out[:, :reduced.shape[1]] = reduced
        return out.astype(np.float32), "pca"
    import umap
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, n - 1)
    dist, idx = NearestNeighbors(n_neighbors=k).fit(reduced).kneighbors(reduced)
    with warnings.catch_warnings():  # no search index (we never transform new rows); seed forces one thread
        warnings.filterwarnings("ignore", message=".*(knn_search_index|n_jobs value).*")
        model = umap.UMAP(n_neighbors=k, min_dist=min_dist, random_state=seed,
                          precomputed_knn=(idx, dist.astype(np.float32)))
        coords = model.fit_transform(reduced.astype(np.float32))
    return np.asarray(coords, np.float32), "umap"


def style_map(v_lf: np.ndarray, v_is: np.ndarray, seed: int = 0) -> StyleMap:
    """Maps of both spaces for one scoring run (the store keeps them per run)."""
    lf, method = project(v_lf, seed)
    is_, _ = project(v_is, seed)
    return StyleMap(lf, is_, method)
