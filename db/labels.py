"""Annotator labels: keep, drop or flag an example, with a note; one current label per annotator.
Many at once (`set_labels`) in one transaction, which returns what it replaced so `restore_labels`
can undo it."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, select

from db.models import Label, Result, utcnow
from db.store import Store
from scar_core.errors import ScarError
from scar_core.labels import LABELS


def set_label(store: Store, example_id: int, label: str, annotator: str, note: str | None = None) -> None:
    """Record (or replace) this annotator's label on one example (set_labels for one)."""
    set_labels(store, [example_id], label, annotator, note)


def labels_for(store: Store, example_ids: Sequence[int]) -> list[Label]:
    """All annotators' labels on these examples, newest first."""
    ids = [int(i) for i in example_ids]
    with store.read() as s:
        return list(s.scalars(select(Label).where(Label.example_id.in_(ids))
                              .order_by(Label.created_at.desc(), Label.id.desc())))


class Replaced(NamedTuple):
    """An annotator's label on an example before set_labels replaced it (label None: there was none)."""

    example_id: int
    label: str | None
    note: str | None
    created_at: datetime | None


def _check(label: str, annotator: str) -> None:
    if label not in LABELS:
        raise ScarError(f"unknown label '{label}'; choose keep, drop or flag")
    if not annotator:
        raise ScarError("a label needs an annotator name")


def set_labels(store: Store, example_ids: Sequence[int], label: str, annotator: str,
               note: str | None = None) -> list[Replaced]:
    """Give all these examples this annotator's `label` (and `note`) in one transaction; returns what
    each had before, for restore_labels."""
    _check(label, annotator)
    ids = list(dict.fromkeys(int(i) for i in example_ids))

    def work(session) -> list[Replaced]:
        now, before = utcnow(), []
        for lo in range(0, len(ids), 5000):
            chunk = ids[lo:lo + 5000]
            found = {row.example_id: row for row in session.scalars(
                select(Label).where(Label.annotator == annotator, Label.example_id.in_(chunk)))}
            for example_id in chunk:
                row = found.get(example_id)
                if row is None:
                    before.append(Replaced(example_id, None, None, None))
                    session.add(Label(example_id=example_id, annotator=annotator, label=label, note=note,
                                      created_at=now))
                else:
                    before.append(Replaced(example_id, row.label, row.note, row.created_at))
                    row.label, row.note, row.created_at = label, note, now
        return before
    return store.transact(work)


def restore_labels(store: Store, annotator: str, before: Sequence[Replaced]) -> None:
    """Undo set_labels: put back this annotator's earlier labels and remove the ones that were new."""
    def work(session) -> None:
        removed = [r.example_id for r in before if r.label is None]
        for lo in range(0, len(removed), 5000):
            session.execute(delete(Label).where(Label.annotator == annotator,
                                                Label.example_id.in_(removed[lo:lo + 5000])))
        kept = {r.example_id: r for r in before if r.label is not None}
        ids = list(kept)
        for lo in range(0, len(ids), 5000):
            for row in session.scalars(select(Label).where(Label.annotator == annotator,
                                                           Label.example_id.in_(ids[lo:lo + 5000]))):
                old = kept[row.example_id]
                row.label, row.note, row.created_at = old.label, old.note, old.created_at
    store.transact(work)


def run_annotations(store: Store, run_id: int) -> list[tuple[int, str, str]]:
    """(example id, annotator, label) of every label on the run's examples, for agreement."""
    query = (select(Label.example_id, Label.annotator, Label.label)
             .join(Result, Result.example_id == Label.example_id).where(Result.run_id == run_id))
    with store.read() as s:
        return [tuple(row) for row in s.execute(query)]


def labelled_by(store: Store, run_id: int, annotator: str) -> set[int]:
    """Ids of the run's examples this annotator has labelled."""
    query = (select(Label.example_id).join(Result, Result.example_id == Label.example_id)
             .where(Result.run_id == run_id, Label.annotator == annotator))
    with store.read() as s:
        return set(s.scalars(query))
