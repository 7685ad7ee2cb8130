"""Near duplicates: MinHash signatures over word n-gram shingles, LSH banding, connected components.

Signatures are datasketch MinHashes (scheme "affine32", permutations drawn from `seed`), computed
for many texts at once with numpy: every shingle of a chunk of texts goes through the same
permutations in one matrix operation, and `np.minimum.reduceat` takes each text's minimum.
`test_clean.py` checks that a signature equals what `datasketch.MinHash.update_batch` gives.

Banding uses the bands x rows that `datasketch.MinHashLSH` picks for the threshold, but buckets
are found by sorting one 64-bit key per text and band instead of filling MinHashLSH's dict of
sets: for 100k signatures, inserting into and querying MinHashLSH took 26 s and about 0.9 GB on
the development machine, the sorted keys 0.4 s of CPU and 20 MB. Each pair that shares a bucket is kept only if its estimated Jaccard similarity (the
share of equal signature values) reaches the threshold; kept pairs are joined into clusters with
scipy's connected components (the union-find of the pair graph).
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

WORD = re.compile(r"\w+")
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53], dtype=np.uint64)
_CHUNK_SHINGLES = 60_000  # shingles per matrix operation: 60k x 128 permutations x 4 bytes = 31 MB
_VOCAB_LIMIT = 2_000_000  # word hashes cached before the cache is emptied (bounds memory)


class _WordHashes(dict):
    """A stable 32-bit hash per word (crc32), cached because words repeat across texts."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _VOCAB_LIMIT:
            self.clear()
        value = self[word] = zlib.crc32(word.encode("utf-8"))
        return value


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, which datasketch applies to every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes(text: str, ngram: int, words: _WordHashes | None = None) -> np.ndarray:
    """32-bit hashes of the lower-cased word n-grams of `text` (a text shorter than n words is one
    shingle; no words: an empty array). Word order inside an n-gram matters."""
    words = _WordHashes() if words is None else words
    tokens = WORD.findall(text.casefold())
    if not tokens:
        return np.empty(0, dtype=np.uint32)
    t = np.fromiter(map(words.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
    n = min(ngram, len(t))
    with np.errstate(over="ignore"):
        h = np.zeros(len(t) - n + 1, dtype=np.uint64)
        for k in range(n):
            h = (h ^ t[k: len(t) - n + 1 + k]) * _MIX[k % len(_MIX)]
    return (h >> np.uint64(32)).astype(np.uint32)


def signatures(texts: Iterable[str], num_perm: int = 128, ngram: int = 3, seed: int = 1) -> np.ndarray:
    """MinHash signatures, one row of `num_perm` uint32 values per text. A text without words
    gets all-max values (the empty sketch), which `clusters` never pairs."""
    a, b = (p[:, None] for p in MinHash(num_perm=num_perm, seed=seed).permutations)
    words = _WordHashes()
    buffer = np.empty((num_perm, 2 * _CHUNK_SHINGLES), dtype=np.uint32)  # reused: no page faults
    rows: list[np.ndarray] = []
    chunk: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal buffer, chunk, size
        lengths = np.array([len(s) for s in chunk])
        out = np.full((len(chunk), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        if size:
            if size > buffer.shape[1]:
                buffer = np.empty((num_perm, size), dtype=np.uint32)
            permuted = buffer[:, :size]
            np.multiply(a, _fmix32(np.concatenate(chunk))[None, :], out=permuted)
            permuted += b  # a * h + b wraps around mod 2^32, as datasketch's affine32 scheme does
            starts = np.concatenate([[0], np.cumsum(lengths[lengths > 0])[:-1]])
            out[lengths > 0] = np.minimum.reduceat(permuted, starts, axis=1).T
        rows.append(out)
        chunk, size = [], 0

    for text in texts:
        s = shingle_hashes(text, ngram, words)
        chunk.append(s)
        size += len(s)
        if size >= _CHUNK_SHINGLES:
            flush()
    if chunk:
        flush()
    return np.concatenate(rows) if rows else np.empty((0, num_perm), dtype=np.uint32)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH chooses for this threshold."""
    index = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return index.b, index.r


def candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Pairs (i, j) of texts that share at least one LSH bucket: every member of a bucket is
    paired with the bucket's first member. Shape (k, 2), unique, i < j."""
    empty = (sig == np.iinfo(np.uint32).max).all(axis=1)
    live = np.flatnonzero(~empty)
    if len(live) < 2:
        return np.empty((0, 2), dtype=np.int64)
    pairs = []
    with np.errstate(over="ignore"):
        for band in range(bands):
            block = sig[live, band * rows:(band + 1) * rows].astype(np.uint64)
            key = np.zeros(len(live), dtype=np.uint64)
            for k in range(rows):
                key = (key ^ block[:, k]) * _MIX[k % len(_MIX)]
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            new_bucket = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
            first = order[np.maximum.accumulate(np.where(new_bucket, np.arange(len(order)), 0))]
            member = ~new_bucket
            pairs.append(np.stack([live[first[member]], live[order[member]]], axis=1))
    found = np.concatenate(pairs).astype(np.int64)
    code = np.unique(found[:, 0] * len(sig) + found[:, 1])
    return np.stack([code // len(sig), code % len(sig)], axis=1)


def similarity(sig: np.ndarray, pairs: np.ndarray, batch: int = 100_000) -> np.ndarray:
    """Estimated Jaccard similarity of each pair: the share of equal signature values."""
    out = np.empty(len(pairs))
    for s in range(0, len(pairs), batch):
        p = pairs[s: s + batch]
        out[s: s + batch] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    return out


def clusters(sig: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
    """Clusters of near-duplicate rows of `sig` (estimated Jaccard >= threshold, joined
    transitively): those with two or more members, each as sorted row positions, ordered by
    their first member. The same signatures always give the same clusters."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    bands, rows = lsh_params(threshold, sig.shape[1])
    pairs = candidate_pairs(sig, bands, rows)
    pairs = pairs[similarity(sig, pairs) >= threshold]
    n = len(sig)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return groups(label)


def groups(label: np.ndarray) -> list[np.ndarray]:
    """Positions sharing a label, for labels held by two or more, ordered by first position."""
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1], True])
    found = [order[s:e] for s, e in zip(bounds[:-1], bounds[1:]) if e - s > 1]
    return sorted(found, key=lambda c: c[0])
