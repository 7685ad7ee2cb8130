"""Comparing two scoring runs of one dataset: the runs and their scores from the store, the figures from
scar_core.compare. The CLI's `compare` and the Compare page both call `compare_runs`."""
from __future__ import annotations

from db import datasets, rankers, runs
from db.models import Run
from db.store import Store
from scar_core.compare import Comparison, compare
from scar_core.errors import ScarError
from scar_core.jobs import access


def run_pair(store: Store, run_a: int, run_b: int) -> tuple[Run, Run]:
    """The two runs, refused unless both exist, differ and scored the same dataset."""
    found = []
    for run_id in (run_a, run_b):
        run = runs.get_run(store, run_id)
        if run is None:
            raise ScarError(f"no scoring run {run_id} in the store")
        found.append(run)
    a, b = found
    if a.id == b.id:
        raise ScarError(f"run {a.id} compared with itself; pick two different runs")
    if a.dataset_id != b.dataset_id:
        name_a, name_b = (getattr(datasets.get_dataset(store, r.dataset_id), "name", "?") for r in (a, b))
        raise ScarError(f"run {a.id} scored dataset #{a.dataset_id} ({name_a}) and run {b.id} dataset "
                        f"#{b.dataset_id} ({name_b}); only runs over the same dataset can be compared")
    return a, b


def compare_runs(store: Store, run_a: int, run_b: int, limit: int = 20) -> tuple[Comparison, Run, Run]:
    """(the comparison of two runs' scores over the examples both have scored, run A, run B)."""
    access.require(store, "compare", run_id=run_a)
    a, b = run_pair(store, run_a, run_b)
    return compare(*runs.run_scores(store, a.id), *runs.run_scores(store, b.id), limit=limit), a, b


def describe(store: Store, run: Run) -> dict:
    """What a run is, for the comparison's report: dataset, ranker, device, precision, status, rows scored."""
    ranker = rankers.get_ranker(store, run.ranker_id)
    dataset = datasets.get_dataset(store, run.dataset_id)
    return {"run": run.id, "dataset": {"id": run.dataset_id, "name": dataset.name if dataset else None},
            "ranker": {"id": run.ranker_id, "name": ranker.name if ranker else None},
            "device": run.device, "precision": run.precision, "status": run.status,
            "scored": runs.count_done(store, run.id)}


def report(store: Store, run_a: int, run_b: int, limit: int = 20) -> dict:
    """The comparison as JSON values: both runs described, then every figure (Comparison.summary)."""
    comparison, a, b = compare_runs(store, run_a, run_b, limit)
    return {"run_a": describe(store, a), "run_b": describe(store, b), **comparison.summary()}
