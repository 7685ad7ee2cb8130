"""Annotator labels: keep, drop or flag an example, with a note; one current label per annotator."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from db.models import Label, utcnow
from db.store import Store
from scar_core.errors import ScarError
from scar_core.labels import LABELS


def set_label(store: Store, example_id: int, label: str, annotator: str, note: str | None = None) -> Label:
    """Record (or replace) this annotator's label on an example."""
    if label not in LABELS:
        raise ScarError(f"unknown label '{label}'; choose keep, drop or flag")
    if not annotator:
        raise ScarError("a label needs an annotator name")

    def work(session) -> Label:
        row = session.scalar(select(Label).where(Label.example_id == example_id, Label.annotator == annotator))
        if row is None:
            row = Label(example_id=example_id, annotator=annotator)
            session.add(row)
        row.label, row.note, row.created_at = label, note, utcnow()
        session.flush()
        return row
    return store.transact(work)


def labels_for(store: Store, example_ids: Sequence[int]) -> list[Label]:
    """All annotators' labels on these examples, newest first."""
    ids = [int(i) for i in example_ids]
    with store.read() as s:
        return list(s.scalars(select(Label).where(Label.example_id.in_(ids))
                              .order_by(Label.created_at.desc(), Label.id.desc())))
