"""Annotator labels: the labels file of the CLI's `rank --labels` (one row per example with `id`, the
example's content id as `score` writes it, and `label`, keep, drop or flag, in any format the loader
reads: .jsonl, .json, .csv, .parquet), agreement between annotators, and an annotator's review queue."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from scar_core.errors import InputError, ScarError
from scar_core.formats.reader import Unreadable, read_rows

LABELS = ("keep", "drop", "flag")


def read_labels(path: str | Path) -> dict[str, str]:
    """{example id: label}; a later row for the same id replaces an earlier one. Bad rows are refused
    with the file, the row and the field."""
    out: dict[str, str] = {}
    for where, row in read_rows(Path(path), header_fits=lambda header: "id" in header):
        if isinstance(row, Unreadable):
            raise InputError(str(path), row.reason, where, row.field)
        if not isinstance(row, dict):
            raise InputError(str(path), "expected an object with 'id' and 'label'", where)
        for name in ("id", "label"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise InputError(str(path), "expected text", where, name)
        if row["label"] not in LABELS:
            raise InputError(str(path), f"expected one of {', '.join(LABELS)}, got {row['label']!r}", where, "label")
        out[row["id"].strip()] = row["label"]
    return out


@dataclass(frozen=True)
class PairAgreement:
    """How two annotators agree on the examples both labelled."""

    first: str
    second: str
    shared: int          # examples both labelled
    agreement: float     # share of those with the same label
    kappa: float | None  # Cohen's kappa; None when it is undefined (both always gave one and the same label)


def agreement(labelled: Iterable[tuple[int, str, str]]) -> list[PairAgreement]:
    """Raw agreement and Cohen's kappa (scikit-learn) for every pair of annotators who labelled at least
    one example in common, from (example id, annotator, label) rows; pairs sharing most examples first."""
    from sklearn.metrics import cohen_kappa_score

    by_annotator: dict[str, dict[int, str]] = {}
    for example_id, annotator, label in labelled:
        by_annotator.setdefault(annotator, {})[int(example_id)] = label
    out = []
    for first, second in combinations(sorted(by_annotator), 2):
        a, b = by_annotator[first], by_annotator[second]
        shared = sorted(a.keys() & b.keys())
        if not shared:
            continue
        x, y = [a[i] for i in shared], [b[i] for i in shared]
        same = sum(p == q for p, q in zip(x, y)) / len(shared)
        kappa = None
        if len(set(x) | set(y)) > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = float(cohen_kappa_score(x, y, labels=list(LABELS)))
            kappa = value if np.isfinite(value) else None
        out.append(PairAgreement(first, second, len(shared), same, kappa))
    return sorted(out, key=lambda p: (-p.shared, p.first, p.second))


QUEUE_ORDERS = ("best", "random")


def review_queue(ids_best_first: Sequence[int], done: Collection[int], order: str = "best",
                 seed: int = 0) -> list[int]:
    """An annotator's review queue: the examples (given best first) they have not labelled yet, best first
    or in a seeded random order. The random order is drawn over all the ids before the labelled ones are
    left out, so labelling one leaves the rest of the queue in place."""
    if order not in QUEUE_ORDERS:
        raise ScarError(f"unknown queue order '{order}'; choose best or random")
    ids = [int(i) for i in ids_best_first]
    if order == "random":
        ids = [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    done = set(done)
    return [i for i in ids if i not in done]
