"""2-D map coordinates of a run's examples, one layout per representation space ('lf' or 'is')."""
from __future__ import annotations

import numpy as np
from sqlalchemy import delete, func, insert, select

from db.models import Example, MapPoint, Result
from db.store import Store
from scar_core.errors import ScarError

SPACES = ("lf", "is")
PREVIEW_CHARS = 200  # of each text, for the points' hover


def save_map(store: Store, run_id: int, space: str, example_ids: np.ndarray, xy: np.ndarray) -> None:
    """Replace the run's layout in this space with these coordinates ((N,) ids, (N, 2) xy)."""
    if space not in SPACES:
        raise ScarError(f"unknown space '{space}'; choose lf or is")
    rows = [{"run_id": run_id, "space": space, "example_id": int(i), "x": float(p[0]), "y": float(p[1])}
            for i, p in zip(np.asarray(example_ids).tolist(), np.asarray(xy))]

    def work(session) -> None:
        session.execute(delete(MapPoint).where(MapPoint.run_id == run_id, MapPoint.space == space))
        for lo in range(0, len(rows), 5000):
            session.execute(insert(MapPoint), rows[lo:lo + 5000])
    store.transact(work)


def map_points(store: Store, run_id: int, space: str) -> dict[str, np.ndarray]:
    """{"example_id", "x", "y", "score", "source", "instruction", "response"} arrays of a stored layout
    (empty when none); the texts are their first PREVIEW_CHARS characters."""
    query = (select(MapPoint.example_id, MapPoint.x, MapPoint.y, Result.score, Example.source,
                    func.substr(Example.instruction, 1, PREVIEW_CHARS),
                    func.substr(Example.response, 1, PREVIEW_CHARS))
             .join(Result, (Result.run_id == MapPoint.run_id) & (Result.example_id == MapPoint.example_id))
             .join(Example, Example.id == MapPoint.example_id)
             .where(MapPoint.run_id == run_id, MapPoint.space == space).order_by(MapPoint.example_id))
    with store.read() as s:
        rows = s.execute(query).all()
    return {"example_id": np.array([r[0] for r in rows], dtype=np.int64),
            "x": np.array([r[1] for r in rows], dtype=np.float32),
            "y": np.array([r[2] for r in rows], dtype=np.float32),
            "score": np.array([r[3] for r in rows], dtype=np.float32),
            "source": np.array([r[4] or "" for r in rows], dtype=object),
            "instruction": np.array([r[5] or "" for r in rows], dtype=object),
            "response": np.array([r[6] or "" for r in rows], dtype=object)}
