"""Named selections of a run (rule, parameters, chosen example ids) and the exports written from them."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from db.models import Export, Run, Selection, utcnow
from db.store import Store
from scar_core.errors import ScarError


def save_selection(store: Store, run_id: int, name: str, rule: str, params: dict, example_ids: Sequence[int],
                   replace: bool = False) -> Selection:
    """Store a selection under a name. A name used on this run already is refused unless `replace`,
    which adds the next version (the earlier versions stay). A name names one subset of a dataset:
    one already used on another run of the same dataset is refused, so two selections an export could
    be made from never share a name."""
    ids = [int(i) for i in example_ids]

    def work(session) -> Selection:
        dataset_id = session.scalar(select(Run.dataset_id).where(Run.id == run_id).with_for_update())
        if dataset_id is None:
            raise ScarError(f"no scoring run {run_id} in the store")
        taken = session.scalar(select(Selection.run_id).join(Run, Run.id == Selection.run_id)
                               .where(Run.dataset_id == dataset_id, Selection.name == name,
                                      Selection.run_id != run_id).limit(1))
        if taken is not None:
            raise ScarError(f"selection name '{name}' is already used on run {taken} of this dataset; "
                            f"choose another name (for example '{name} (run {run_id})')")
        latest = session.scalar(select(Selection).where(Selection.run_id == run_id, Selection.name == name)
                                .order_by(Selection.version.desc()).limit(1))
        if latest is not None and not replace:
            session.expunge(latest)  # kept readable after the rollback
            raise NameTaken(latest)
        row = Selection(run_id=run_id, name=name, version=latest.version + 1 if latest else 1, rule=rule,
                        params=params, example_ids=ids, created_at=utcnow())
        session.add(row)
        session.flush()
        return row
    return store.transact(work)


class NameTaken(ScarError):
    """Saving under a name this run already uses, without asking to replace it."""

    def __init__(self, latest: Selection):
        super().__init__(f"a selection named '{latest.name}' already exists (version {latest.version}, "
                         f"{len(latest.example_ids)} rows); replace it (it stays as an earlier version) "
                         "or choose another name")
        self.latest = latest


def list_selections(store: Store, run_id: int, versions: bool = False) -> list[Selection]:
    """The run's selections, oldest first: the latest version of each name, or with `versions` all."""
    query = select(Selection).where(Selection.run_id == run_id).order_by(Selection.id)
    with store.read() as s:
        rows = list(s.scalars(query))
    if versions:
        return rows
    latest = {}
    for row in rows:
        if row.version >= latest.get(row.name, row).version:
            latest[row.name] = row
    return sorted(latest.values(), key=lambda r: r.id)


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
