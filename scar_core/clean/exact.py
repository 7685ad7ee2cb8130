"""Exact duplicates: pairs whose text is identical up to whitespace, letter case and Unicode form.

The compared text is the whole pair as the ranker sees it: earlier turns of a conversation,
the instruction and the response. Each pair is reduced to a 16-byte digest, so memory stays
small however long the texts are.
"""
from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import numpy as np

from scar_core.example import Example


def normalise(text: str) -> str:
    """NFKC, case-folded, runs of whitespace collapsed to one space, ends trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def digest(example: Example) -> bytes:
    parts = [f"{t['role']}\x1f{normalise(t['content'])}" for t in example.context]
    parts += [normalise(example.instruction), normalise(example.response)]
    return hashlib.blake2b("\x1e".join(parts).encode("utf-8"), digest_size=16).digest()


def groups(examples: Sequence[Example]) -> np.ndarray:
    """For each example, the position of the first example with the same normalised text
    (its own position when it is the first)."""
    first: dict[bytes, int] = {}
    return np.fromiter((first.setdefault(digest(ex), i) for i, ex in enumerate(examples)),
                       dtype=np.int64, count=len(examples))
