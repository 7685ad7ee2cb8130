"""Datasets and their examples: importing a file in one transaction, reading examples back."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from db.models import Dataset, Example
from db.store import Store
from scar_core import example as core
from scar_core.export import file_sha256
from scar_core.load import LoadResult, load


def import_file(store: Store, path: str | Path, fmt: str | None = None, lenient: bool = False,
                field_map: dict[str, str] | None = None, source: str | None = None, reuse: bool = True) -> Dataset:
    """Load a file with scar_core.load.load and store it (see import_result)."""
    result = load(path, fmt=fmt, lenient=lenient, field_map=field_map, source=source)
    return import_result(store, result, {"fmt": fmt, "lenient": lenient, "field_map": field_map, "source": source},
                         reuse=reuse)


def import_result(store: Store, result: LoadResult, load_params: dict | None = None, reuse: bool = True) -> Dataset:
    """Store a loaded file as a dataset and its examples in ONE transaction: a failure stores nothing.

    With reuse, the same file (sha256) loaded with the same options returns the dataset already stored,
    so its scores are found again.
    """
    sha = file_sha256(result.path)
    params = load_params or {}

    def work(session) -> Dataset:
        if reuse:
            for found in session.scalars(select(Dataset).where(Dataset.sha256 == sha).order_by(Dataset.id)):
                if found.load_params == params and found.format == result.format:
                    return found
        dataset = Dataset(name=Path(result.path).name, path=str(Path(result.path).resolve()), sha256=sha,
                          format=result.format, row_count=result.rows, example_count=len(result.examples),
                          rejected=[{"where": r.where, "field": r.field, "reason": r.reason} for r in result.rejected],
                          load_params=params)
        session.add(dataset)
        session.flush()
        rows = [{"dataset_id": dataset.id, "position": i, "content_id": ex.id, "instruction": ex.instruction,
                 "context": ex.context, "response": ex.response, "system": ex.system, "source": ex.source,
                 "meta": ex.meta, "flags": {}} for i, ex in enumerate(result.examples)]
        for lo in range(0, len(rows), 5000):
            session.execute(insert(Example), rows[lo:lo + 5000])
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


def examples(store: Store, dataset_id: int, offset: int = 0, limit: int = 100) -> list[Example]:
    """A page of a dataset's examples in file order."""
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


def set_flags(store: Store, flags: dict[int, dict]) -> None:
    """Replace the cleaning flags of examples: {example id: {flag name: detail}}."""
    def work(session) -> None:
        for example_id, value in flags.items():
            session.execute(update(Example).where(Example.id == example_id).values(flags=value))
    store.transact(work)


def to_core(row: Example) -> core.Example:
    """The scar_core Example for a stored example (what the ranker scores)."""
    return core.Example(instruction=row.instruction, response=row.response, context=list(row.context or []),
                        system=row.system, source=row.source, meta=dict(row.meta or {}), id=row.content_id)
