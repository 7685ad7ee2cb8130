"""Queries the app's pages need beyond the repository modules: renaming datasets, the per-row
columns of a run for the Select page (one query, numpy arrays), labels as overrides, and a
selection's examples best first for export. Everything uses bound parameters."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from sqlalchemy import String, cast, func, literal, select, update

from db.models import Dataset, Example, Result
from db.store import Store, sqlite_file
from scar_core.errors import ScarError

UPLOADS_ENV = "SCAR_UPLOAD_DIR"
DATA_ENV = "SCAR_DATA_DIR"


def data_folder(store: Store) -> Path:
    """Where the app writes files (uploads, exports, trained rankers): $SCAR_DATA_DIR, else
    `<store name>-data/` beside a SQLite store (`scar_studio-data/` for the default store, which
    .gitignore leaves out), else `~/.local/share/scar_studio` for a server database. Never the
    source tree itself."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    database = sqlite_file(store.url)
    if database:
        path = database.resolve()
        return path.parent / f"{path.stem}-data"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").expanduser() / "scar_studio"


def upload_folder(store: Store) -> Path:
    """Where uploaded files are kept: $SCAR_UPLOAD_DIR, else `uploads/` in the data folder."""
    if os.environ.get(UPLOADS_ENV):
        return Path(os.environ[UPLOADS_ENV]).expanduser()
    return data_folder(store) / "uploads"


def export_folder(store: Store) -> Path:
    """The default folder for exports written on the server: `exports/` in the data folder."""
    return data_folder(store) / "exports"


def rankers_folder(store: Store) -> Path:
    """Where the app's training jobs write rankers: `rankers/` in the data folder."""
    return data_folder(store) / "rankers"


def rename_dataset(store: Store, dataset_id: int, name: str) -> None:
    """Give a dataset a new display name (the file it came from is unchanged)."""
    name = name.strip()
    if not name:
        raise ScarError("a dataset name cannot be empty")
    store.transact(lambda s: s.execute(update(Dataset).where(Dataset.id == dataset_id).values(name=name[:512])))


def words(column):
    """Whitespace word count of a text column, computed in the database (spaces and newlines + 1)."""
    spaced = func.replace(func.replace(column, literal("\n"), literal(" ")), literal(" "), literal(""))
    return func.length(column) - func.length(spaced) + 1


def run_columns(store: Store, run_id: int) -> pd.DataFrame:
    """One row per scored example in file order: example_id, score, lf/is contributions, source,
    response words, duplicate_cluster and exact_group (-1: none),
    flags (names of the stored cleaning flags joined by ', '), findings (the stored flags, {kind: flag})."""
    query = (select(Result.example_id, Result.score, Result.lf_contribution, Result.is_contribution,
                    Example.source, words(Example.response).label("words"), Example.duplicate_cluster,
                    Example.exact_group)
             .join(Example, Example.id == Result.example_id)
             .where(Result.run_id == run_id).order_by(Example.position))
    flagged = (select(Result.example_id, Example.flags).join(Example, Example.id == Result.example_id)
               .where(Result.run_id == run_id, func.length(cast(Example.flags, String)) > 2))
    with store.read() as s:
        frame = pd.DataFrame(s.execute(query).all(), columns=["example_id", "score", "lf_contribution",
                                                              "is_contribution", "source", "words",
                                                              "duplicate_cluster", "exact_group"])
        stored = {example_id: flags for example_id, flags in s.execute(flagged) if flags}
    for column in ("duplicate_cluster", "exact_group"):
        frame[column] = frame[column].fillna(-1).astype("int64")
    frame["flags"] = frame["example_id"].map(lambda i: ", ".join(sorted(stored.get(i, {}))))
    frame["findings"] = frame["example_id"].map(lambda i: stored.get(i, {}))
    return frame


def selected_rows(store: Store, run_id: int, example_ids: Sequence[int]) -> list[tuple[Example, float]]:
    """(stored example, score) for these ids, best first (ties in file order)."""
    ids = [int(i) for i in example_ids]
    out: list[tuple[Example, float]] = []
    with store.read() as s:
        for lo in range(0, len(ids), 5000):
            query = (select(Example, Result.score).join(Result, Result.example_id == Example.id)
                     .where(Result.run_id == run_id, Example.id.in_(ids[lo:lo + 5000])))
            out.extend((row[0], float(row[1])) for row in s.execute(query))
    out.sort(key=lambda pair: (-pair[1], pair[0].position))
    return out
