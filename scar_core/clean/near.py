"""Near duplicates: MinHash signatures over word n-gram shingles, LSH banding, connected components.

Signatures are datasketch MinHashes (scheme "affine32", permutations drawn from `seed`), computed
for many texts at once with numpy, with no Python loop over words: the words of a chunk of texts
are hashed from their UTF-8 bytes with prefix sums, every shingle of the chunk goes through the
permutations in one matrix operation, and `np.minimum.reduceat` takes each text's minimum.
`test_clean.py` checks that a signature equals what `datasketch.MinHash.update_batch` gives for
the same shingle hashes. Per-word Python hashing took three times the CPU time.

Banding uses the bands x rows that `datasketch.MinHashLSH` picks for the threshold, but buckets
are found by sorting one 64-bit key per text and band instead of filling MinHashLSH's dict of
sets: for 100k signatures, inserting into and querying MinHashLSH took 26 s and about 0.9 GB on
the development machine, the sorted keys 0.4 s of CPU and 20 MB. Each pair that shares a bucket is kept only if its estimated Jaccard similarity (the
share of equal signature values) reaches the threshold; kept pairs are joined into clusters with
scipy's connected components (the union-find of the pair graph).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53], dtype=np.uint64)
_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2^64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_CHUNK_CHARS = 400_000  # text hashed per matrix operation: about 60k shingles x 128 permutations x 4 bytes
_WORD_BYTE = np.zeros(256, dtype=bool)  # ASCII letters, digits, underscore and every byte of a non-ASCII character
_WORD_BYTE[[*b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"]] = True
_WORD_BYTE[128:] = True


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, which datasketch applies to every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _powers(base: int, n: int) -> np.ndarray:
    out = np.full(n, base, dtype=np.uint64)
    out[:1] = 1
    return np.cumprod(out, dtype=np.uint64)  # wraps around mod 2^64


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every word of the case-folded texts and the text each word is in.

    Words are runs of ASCII letters, digits and underscores and of non-ASCII characters. All
    texts are hashed at once: a polynomial prefix hash over the UTF-8 bytes gives each word's
    hash as a difference of two prefixes, scaled back to start at power zero, so equal words
    get equal hashes wherever they stand.
    """
    encoded = [t.casefold().encode("utf-8") for t in texts]
    data = np.frombuffer(b"\n".join(encoded), dtype=np.uint8)
    word = _WORD_BYTE[data]
    edge = np.diff(np.r_[False, word, False].astype(np.int8))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * _powers(_BASE, len(data)), out=prefix[1:])
    hashes = (prefix[ends] - prefix[starts]) * _powers(_BASE_INV, len(data) + 1)[starts]
    text_starts = np.cumsum([0] + [len(e) + 1 for e in encoded[:-1]])
    return hashes, np.searchsorted(text_starts, starts, side="right") - 1


def _shingles(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word n-grams of each text, concatenated, and how many each text has.

    Word order inside an n-gram matters; a text of fewer than n words is one shingle of all its
    words, a text without words has none."""
    with np.errstate(over="ignore"):
        words, owner = _word_hashes(texts)
        counts = np.bincount(owner, minlength=len(texts))
        n = ngram
        h = np.zeros(max(len(words) - n + 1, 0), dtype=np.uint64)
        for k in range(n):
            h = (h ^ words[k: len(words) - n + 1 + k]) * _MIX[k % len(_MIX)]
        keep = owner[: len(h)] == owner[n - 1:] if len(h) else np.zeros(0, dtype=bool)
        parts, owners = [h[keep]], [owner[: len(h)][keep]]
        first = np.r_[0, np.cumsum(counts)[:-1]]
        for t in np.flatnonzero((counts > 0) & (counts < n)):  # short texts: one shingle each
            g = np.zeros(1, dtype=np.uint64)
            for k in range(counts[t]):
                g = (g ^ words[first[t] + k]) * _MIX[k % len(_MIX)]
            parts.append(g)
            owners.append(np.array([t]))
        order = np.argsort(np.concatenate(owners), kind="stable")
        hashes = (np.concatenate(parts)[order] >> np.uint64(32)).astype(np.uint32)
    return hashes, np.maximum(counts - n + 1, np.minimum(counts, 1))


def shingle_hashes(text: str, ngram: int = 3) -> np.ndarray:
    """The shingle hashes of one text (what `signatures` feeds to the MinHash permutations)."""
    return _shingles([text], ngram)[0]


def signatures(texts: Iterable[str], num_perm: int = 128, ngram: int = 3, seed: int = 1) -> np.ndarray:
    """MinHash signatures, one row of `num_perm` uint32 values per text. A text without words
    gets all-max values (the empty sketch), which `clusters` never pairs."""
    from datasketch import MinHash  # datasketch pulls in scipy: 0.4 s that `score` does not need

    a, b = (p[:, None] for p in MinHash(num_perm=num_perm, seed=seed).permutations)
    rows: list[np.ndarray] = []
    chunk: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal chunk, size
        hashes, lengths = _shingles(chunk, ngram)
        out = np.full((len(chunk), num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        if len(hashes):
            permuted = np.multiply(a, _fmix32(hashes)[None, :])
            permuted += b  # a * h + b wraps around mod 2^32, as datasketch's affine32 scheme does
            starts = np.r_[0, np.cumsum(lengths[lengths > 0])[:-1]]
            out[lengths > 0] = np.minimum.reduceat(permuted, starts, axis=1).T
        rows.append(out)
        chunk, size = [], 0

    for text in texts:
        chunk.append(text)
        size += len(text)
        if size >= _CHUNK_CHARS:
            flush()
    if chunk:
        flush()
    return np.concatenate(rows) if rows else np.empty((0, num_perm), dtype=np.uint32)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) that datasketch's MinHashLSH chooses for this threshold."""
    from datasketch import MinHashLSH

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
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return groups(label)


def groups(label: np.ndarray) -> list[np.ndarray]:
    """Positions sharing a label, for labels held by two or more, ordered by first position."""
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1], True])
    found = [order[s:e] for s, e in zip(bounds[:-1], bounds[1:]) if e - s > 1]
    return sorted(found, key=lambda c: c[0])
