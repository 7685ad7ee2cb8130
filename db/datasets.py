"""Datasets and their examples: storing a loaded file in one transaction, reading examples back."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select

from db.models import Dataset, Example
from db.store import Store
from scar_core import example as core


def add_dataset(store: Store, name: str, path: str, sha256: str, fmt: str, rows: int,
                examples: Sequence[core.Example], rejected: list[dict], load_params: dict,
                reuse: bool = True) -> Dataset:
    """Store a loaded file as a dataset and its examples in ONE transaction: a failure stores nothing.

    With reuse, the same file (sha256) loaded with the same options returns the dataset already stored,
    so its scores are found again.
    """
    def work(session) -> Dataset:
        if reuse:
            for found in session.scalars(select(Dataset).where(Dataset.sha256 == sha256).order_by(Dataset.id)):
                if found.load_params == load_params and found.format == fmt:
                    return found
        dataset = Dataset(name=name, path=path, sha256=sha256, format=fmt, row_count=rows,
                          example_count=len(examples), rejected=rejected, load_params=load_params)
        session.add(dataset)
        session.flush()
        values = [{"dataset_id": dataset.id, "position": i, "content_id": ex.id, "instruction": ex.instruction,
                   "context": ex.context, "response": ex.response, "system": ex.system, "source": ex.source,
                   "meta": ex.meta, "flags": {}} for i, ex in enumerate(examples)]
        for lo in range(0, len(values), 5000):
            session.execute(insert(Example), values[lo:lo + 5000])
        return dataset

    return store.transact(work)


def list_datasets(store: Store) -> list[Dataset]:
    with store.read() as s:
        return list(s.scalars(select(Dataset).order_by(Dataset.id.desc())))


def get_dataset(store: Store, dataset_id: int) -> Dataset | None:
    with store.read() as s:
        return s.get(Dataset, dataset_id)


def delete_dataset(store: Store, dataset_id: int) -> None:
    """Remove a dataset with its examples, runs and results."""
    store.transact(lambda s: s.execute(delete(Dataset).where(Dataset.id == dataset_id)))


def examples(store: Store, dataset_id: int, offset: int = 0, limit: int | None = 100) -> list[Example]:
    """A page of a dataset's examples in file order (limit None: all of them)."""
    with store.read() as s:
        return list(s.scalars(select(Example).where(Example.dataset_id == dataset_id)
                              .order_by(Example.position).offset(offset).limit(limit)))


def sources(store: Store, dataset_id: int) -> list[str]:
    """The distinct source tags of a dataset (for a filter widget)."""
    with store.read() as s:
        return [v for v in s.scalars(select(Example.source).where(Example.dataset_id == dataset_id)
                                     .group_by(Example.source).order_by(Example.source)) if v is not None]


def count_examples(store: Store, dataset_id: int) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).where(Example.dataset_id == dataset_id)) or 0


def to_core(row: Example) -> core.Example:
    """The scar_core Example for a stored example (what the ranker scores)."""
    return core.Example(instruction=row.instruction, response=row.response, context=list(row.context or []),
                        system=row.system, source=row.source, meta=dict(row.meta or {}), id=row.content_id)
