"""Before a file is imported: keep an uploaded copy on the server and preview its first rows.

The preview reads only the first rows (a big file is never loaded whole to show it), reports the
row shape the loader would detect and the fields it found, so a user can map their own field
names onto the ones a shape expects before importing.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scar_core import formats
from scar_core.display import snippet
from scar_core.errors import InputError, ScarError
from scar_core.export import safe_filename
from scar_core.formats.reader import SUFFIXES, Unreadable, read_rows
from scar_core.load import check_rows, named

@dataclass
class Preview:
    """The first rows of a file as read, the shape detected from the first row, and the field names seen."""

    path: str
    detected: str | None
    fields: list[str]
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)  # where each of `rows` is in the file ("line 2")

    def table(self, width: int = 80) -> pd.DataFrame:
        """The rows as one-line visible snippets (nested values as JSON), for a preview grid."""
        return pd.DataFrame([{k: snippet(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False), width)
                              for k, v in row.items()} for row in self.rows])


    def check(self, fmt: str | None, field_map: dict[str, str] | None) -> list[str]:
        """Why rows of the preview would not import with this format and field map (the loader's own
        check, scar_core.load.check_rows), one message a row."""
        return [f"{r.where}: " + (f"field '{r.field}': " if r.field else "") + r.reason
                for r in check_rows(self.path, list(zip(self.places, self.rows)), fmt, field_map)]


def preview(path: str | Path, limit: int = 20, name: str | None = None) -> Preview:
    """Read up to `limit` rows of a file without loading the rest; raises ScarError for an unreadable file
    (called `name` in messages, default its path)."""
    path = Path(path)
    rows, places, problems, names = [], [], [], {}
    if not path.is_file():
        raise ScarError(f"{name or path}: no such file")
    try:
        for where, row in itertools.islice(read_rows(path, lambda header: True), limit):
            if isinstance(row, Unreadable):
                problems.append(f"{where}: {row.reason}")
            elif isinstance(row, dict):
                rows.append(row)
                places.append(where)
                names.update(dict.fromkeys(row))
            else:
                problems.append(f"{where}: not an object ({type(row).__name__})")
    except ScarError as e:
        raise named(e, path, name) from None
    if not rows and not problems:
        raise ScarError(f"{name or path}: the file holds no rows")
    return Preview(str(path), formats.detect(rows[0]) if rows else None, list(names), rows, problems, places)


def dataset_name(file_name: str, field_map: dict[str, str] | None, source: str | None) -> str:
    """A data set's name in the Library: the file's name, and the field mapping and source tag it was
    imported with, so two imports of one file with different choices are told apart."""
    mapped = ", ".join(f"{expected}←{found}" for expected, found in sorted((field_map or {}).items()))
    return " · ".join([file_name, *([f"fields {mapped}"] if mapped else []), *([f"source {source}"] if source else [])])


def identity(file_sha256: str, load_params: dict) -> str:
    """A data set's identity: the file's content with how it was read (format, field mapping, source tag,
    strict or lenient); the same file read another way is another data set."""
    chosen = {k: load_params.get(k) for k in ("fmt", "field_map", "source", "lenient")}
    return hashlib.sha256(json.dumps([file_sha256, chosen], sort_keys=True).encode()).hexdigest()


def field_map(shape: str, chosen: dict[str, str]) -> dict[str, str] | None:
    """The loader's field map from {expected field: file field}, leaving out identity and empty choices."""
    wanted = set(formats.fields(shape)) if shape in formats.SHAPES else set()
    mapping = {k: v for k, v in chosen.items() if k in wanted and v and v != k}
    return mapping or None


def save_upload(folder: str | Path, name: str, data: bytes) -> Path:
    """Store uploaded bytes as `folder/<content hash>/<safe name>`, so uploads never clobber each other."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(name, f"unsupported file type '{suffix or '(none)'}'; expected one of {', '.join(SUFFIXES)}")
    folder = Path(folder) / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_filename(name, suffix)
    if not target.exists():
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target
