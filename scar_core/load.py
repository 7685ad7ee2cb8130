"""Load step: read .json, .jsonl, .csv or .parquet files into Examples.

The row shape (Alpaca, ShareGPT, OpenAI messages, prompt/completion) is detected from the first
row unless given. Strict mode stops at the first bad row with an InputError naming the file, the
line or row and the field; lenient mode keeps every valid row and reports the others.

Files are read as streams: JSON Lines line by line, CSV record by record and a JSON list element
by element (`formats.reader`), so a big file is never held in memory as both bytes and text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scar_core import formats
from scar_core.errors import InputError, ScarError
from scar_core.example import Example
from scar_core.formats.reader import SUFFIXES, Unreadable, read_rows
from scar_core.formats.row import kind, shown, text

__all__ = ["SUFFIXES", "LoadResult", "Rejected", "load"]


@dataclass
class Rejected:
    """A row that was not loaded, and why."""

    where: str
    field: str | None
    reason: str

    def message(self, path: str) -> str:
        return str(InputError(path, self.reason, self.where, self.field))


@dataclass
class LoadResult:
    path: str
    format: str
    examples: list[Example]
    rows: int
    rejected: list[Rejected] = field(default_factory=list)


def load(path: str | Path, fmt: str | None = None, lenient: bool = False,
         field_map: dict[str, str] | None = None, source: str | None = None) -> LoadResult:
    """Read one file into Examples.

    fmt: a shape name from `formats.SHAPES` (detected when None).
    field_map: {expected field: field in the file}, e.g. {"output": "answer"}.
    source: tag for every example (defaults to the row's `source`/`dataset` field, else the file stem).
    A row's own `id` must be unique in the file: a repeated id is an error (strict) or a rejected row
    (lenient), because scores and edits are matched to rows by it. Rows with the same content but
    no shared id are kept; cleaning flags them later.
    """
    path = Path(path)
    if not path.is_file():
        raise ScarError(f"{path}: no such file")
    shape = formats.shape(fmt) if fmt else None
    examples: list[Example] = []
    rejected: list[Rejected] = []
    seen_ids: dict[object, str] = {}
    rows = 0
    stem = path.stem

    def header_fits(names: list[str]) -> bool:
        row = _mapped(dict.fromkeys(names, ""), field_map)
        return shape.matches(row) if shape else formats.detect(row) is not None

    for where, row in read_rows(path, header_fits):
        rows += 1
        try:
            if isinstance(row, Unreadable):
                raise formats.RowError(row.field, row.reason)
            if not isinstance(row, dict):
                raise formats.RowError(None, f"expected an object with the row's fields, got {kind(row)}")
            row = _mapped(row, field_map)
            if shape is None:
                name = formats.detect(row)
                if name is None:
                    raise formats.RowError(None, f"unknown row shape with fields {_fields(row)}; "
                                           f"expected one of: {EXPECTED}")
                shape = formats.shape(name)
            elif not shape.matches(row):
                raise _misfit(row, shape, "chosen" if fmt else "detected from the first row")
            found = shape.to_examples(row)
            tag = source or _row_source(row) or stem
            row_id = _row_id(row)
            if row_id is not None:
                if row_id in seen_ids:
                    raise formats.RowError("id", f"duplicate id {shown(row_id)}: {seen_ids[row_id]} has the "
                                           "same id; ids must be unique within a file")
                seen_ids[row_id] = where
        except formats.RowError as e:
            if not lenient:
                raise InputError(str(path), str(e), where, e.field) from None
            rejected.append(Rejected(where, e.field, str(e)))
            continue
        for ex in found:
            ex.source = tag
            ex.meta["where"] = where
        examples.extend(found)
    if rows == 0:
        raise InputError(str(path), "the file holds no rows")
    if not examples:
        first = rejected[0].message(str(path)) if rejected else ""
        raise ScarError(f"{path}: no valid rows ({len(rejected)} rejected). First problem: {first}")
    return LoadResult(str(path), shape.NAME, examples, rows, rejected)


EXPECTED = "instruction/output (alpaca), conversations (sharegpt), messages, prompt/completion"


def _mapped(row: dict, field_map: dict[str, str] | None) -> dict:
    if not field_map:
        return row
    return {**{k: v for k, v in row.items() if k not in field_map.values()},
            **{target: row[src] for target, src in field_map.items() if src in row}}


def _misfit(row: dict, shape, how: str) -> formats.RowError:
    """Why a row does not fit the file's format: another format (a mixture) or missing fields."""
    other = formats.detect(row)
    if other is not None:
        return formats.RowError(None, f"this row is in the {other} format but the file's format is "
                                f"{shape.NAME} ({how}); a file must hold one format")
    missing = [f for f in shape.FIELDS if f not in row]
    return formats.RowError(missing[0], f"missing ({shape.NAME} rows need {', '.join(shape.FIELDS)}; "
                            f"this row has {_fields(row)})")


def _fields(row: dict) -> str:
    names = [shown(k, 30) for k in list(row)[:12]]
    return "[" + ", ".join(names) + (", ..." if len(row) > 12 else "") + "]"


def _row_id(row: dict) -> object:
    value = row.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return value


def _row_source(row: dict) -> str | None:
    for key in ("source", "dataset"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return text(row, key)
    return None
