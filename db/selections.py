"""Named selections of a run (rule, parameters, chosen example ids) and the exports written from them."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from db.models import Export, Run, Selection, utcnow
from db.store import Store
from scar_core.errors import ScarError


def save_selection(store: Store, run_id: int, name: str, rule: str, params: dict,
                   example_ids: Sequence[int]) -> Selection:
    """Store a selection under a name, replacing an earlier one of the same name for this run. A name
    names one subset of a dataset: one already used on another run of the same dataset is refused,
    so two selections an export could be made from never share a name."""
    ids = [int(i) for i in example_ids]

    def work(session) -> Selection:
        dataset_id = session.scalar(select(Run.dataset_id).where(Run.id == run_id))
        if dataset_id is None:
            raise ScarError(f"no scoring run {run_id} in the store")
        taken = session.scalar(select(Selection.run_id).join(Run, Run.id == Selection.run_id)
                               .where(Run.dataset_id == dataset_id, Selection.name == name,
                                      Selection.run_id != run_id).limit(1))
        if taken is not None:
            raise ScarError(f"selection name '{name}' is already used on run {taken} of this dataset; "
                            f"choose another name (for example '{name} (run {run_id})')")
        row = session.scalar(select(Selection).where(Selection.run_id == run_id, Selection.name == name))
        if row is None:
            row = Selection(run_id=run_id, name=name)
            session.add(row)
        row.rule, row.params, row.example_ids, row.created_at = rule, params, ids, utcnow()
        session.flush()
        return row
    return store.transact(work)


def list_selections(store: Store, run_id: int) -> list[Selection]:
    with store.read() as s:
        return list(s.scalars(select(Selection).where(Selection.run_id == run_id).order_by(Selection.id)))


def get_selection(store: Store, selection_id: int) -> Selection | None:
    with store.read() as s:
        return s.get(Selection, selection_id)


def record_export(store: Store, path: str, fmt: str, manifest: dict, run_id: int | None = None,
                  selection_id: int | None = None) -> Export:
    def work(session) -> Export:
        row = Export(path=str(path), format=fmt, manifest=manifest, run_id=run_id, selection_id=selection_id)
        session.add(row)
        session.flush()
        return row
    return store.transact(work)


def list_exports(store: Store, run_id: int | None = None) -> list[Export]:
    query = select(Export).order_by(Export.id.desc())
    if run_id is not None:
        query = query.where(Export.run_id == run_id)
    with store.read() as s:
        return list(s.scalars(query))
