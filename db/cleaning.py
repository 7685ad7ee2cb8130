"""The clean step on a stored dataset: flag duplicates and off-language pairs on its examples.

Flags are stored on each example as {kind: detail} (see scar_core.clean); a new cleaning replaces
the old flags, so the store always holds the latest findings and nothing is deleted.
"""
from __future__ import annotations

from sqlalchemy import select

from db.datasets import set_flags, to_core
from db.models import Example
from db.store import Store
from scar_core.clean import clean


def clean_dataset(store: Store, dataset_id: int, dedup: str = "near", lang: str | None = "en") -> dict:
    """Run cleaning over all examples of a dataset, store the flags, return the summary (options, counts)."""
    with store.read() as s:
        rows = list(s.scalars(select(Example).where(Example.dataset_id == dataset_id).order_by(Example.position)))
    report = clean([to_core(r) for r in rows], dedup=dedup, lang=lang)
    changed = {row.id: {f["kind"]: f for f in found} for row, found in zip(rows, report.flags) if found or row.flags}
    set_flags(store, changed)
    return report.summary()


def flag_counts(store: Store, dataset_id: int) -> dict[str, int]:
    """How many examples of a dataset carry each cleaning flag, and how many carry any."""
    counts: dict[str, int] = {}
    flagged = 0
    with store.read() as s:
        for flags in s.scalars(select(Example.flags).where(Example.dataset_id == dataset_id)):
            if flags:
                flagged += 1
                for kind in flags:
                    counts[kind] = counts.get(kind, 0) + 1
    return {**counts, "flagged": flagged}
