"""Cleaning findings on a stored dataset's examples: flags (e.g. language) and duplicate clusters.

A new cleaning replaces the old findings, so the store always holds the latest and nothing is
deleted. Which member of a duplicate cluster is kept is decided after scoring, per run, by
scar_core.clean.duplicate_of; the store keeps the clusters themselves.
"""
from __future__ import annotations

from sqlalchemy import update

from db.models import Example
from db.store import Store


def save_cleaning(store: Store, findings: dict[int, tuple[dict, int | None, int | None]]) -> None:
    """Replace the findings of examples: {example id: (flags {name: detail}, duplicate cluster or None,
    exact group or None)}, in one transaction of bulk updates."""
    values = [{"id": example_id, "flags": flags, "duplicate_cluster": cluster, "exact_group": group}
              for example_id, (flags, cluster, group) in findings.items()]

    def work(session) -> None:
        for lo in range(0, len(values), 5000):
            session.execute(update(Example), values[lo:lo + 5000])

    store.transact(work)
