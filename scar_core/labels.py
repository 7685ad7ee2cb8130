"""Annotator labels as a file, for the CLI's `rank --labels`: one row per example with `id` (the
example's content id, as `score` writes it) and `label` (keep, drop or flag), in any format the
loader reads (.jsonl, .json, .csv, .parquet)."""
from __future__ import annotations

from pathlib import Path

from scar_core.errors import InputError
from scar_core.formats.reader import Unreadable, read_rows

LABELS = ("keep", "drop", "flag")


def read_labels(path: str | Path) -> dict[str, str]:
    """{example id: label}; a later row for the same id replaces an earlier one. Bad rows are refused
    with the file, the row and the field."""
    out: dict[str, str] = {}
    for where, row in read_rows(Path(path), header_fits=lambda header: "id" in header):
        if isinstance(row, Unreadable):
            raise InputError(str(path), row.reason, where, row.field)
        if not isinstance(row, dict):
            raise InputError(str(path), "expected an object with 'id' and 'label'", where)
        for name in ("id", "label"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise InputError(str(path), "expected text", where, name)
        if row["label"] not in LABELS:
            raise InputError(str(path), f"expected one of {', '.join(LABELS)}, got {row['label']!r}", where, "label")
        out[row["id"].strip()] = row["label"]
    return out
