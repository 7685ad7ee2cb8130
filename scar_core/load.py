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
from scar_core.training_data import ROLES

__all__ = ["SUFFIXES", "LoadResult", "Rejected", "check_rows", "load"]


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
         field_map: dict[str, str] | None = None, source: str | None = None, name: str | None = None) -> LoadResult:
    """Read one file into Examples.

    fmt: a shape name from `formats.SHAPES` (detected when None).
    field_map: {expected field: field in the file}, e.g. {"output": "answer"}.
    source: tag for every example (defaults to the row's `source`/`dataset` field, else the file stem).
    name: what messages call the file (an upload's own name, not where the server keeps its copy);
    default the path.
    A row's own `id` must be unique in the file: a repeated id is an error (strict) or a rejected row
    (lenient), because scores and edits are matched to rows by it. Rows with the same content but
    no shared id are kept; cleaning flags them later.
    """
    path = Path(path)
    try:
        return _load(path, fmt, lenient, field_map, source, name or str(path))
    except ScarError as e:
        raise named(e, path, name) from None


def named(error: ScarError, path: Path, name: str | None) -> ScarError:
    """The error with the file called `name` instead of by its path (the error itself when no name)."""
    if not name:
        return error
    if isinstance(error, InputError):
        return InputError(name, error.reason, error.where, error.field)
    return ScarError(str(error).replace(str(path), name))


def _load(path: Path, fmt: str | None, lenient: bool, field_map: dict[str, str] | None, source: str | None,
          name: str) -> LoadResult:
    if not path.is_file():
        raise ScarError(f"{name}: no such file")
    rows = _RowReader(path, fmt, field_map, source)
    examples: list[Example] = []
    rejected: list[Rejected] = []
    count = 0
    for where, row in read_rows(path, rows.header_fits):
        count += 1
        try:
            examples.extend(rows.examples(where, row))
        except formats.RowError as e:
            if not lenient:
                raise InputError(name, str(e), where, e.field) from None
            rejected.append(Rejected(where, e.field, str(e)))
    if count == 0:
        raise InputError(name, "the file holds no rows")
    if not examples:
        first = rejected[0]
        raise InputError(name, f"no valid rows ({len(rejected)} rejected); the first problem: "
                         + (f"field '{first.field}': " if first.field else "") + first.reason, first.where)
    return LoadResult(str(path), rows.shape.NAME, examples, count, rejected)


def check_rows(path: str | Path, rows: list[tuple[str, object]], fmt: str | None = None,
               field_map: dict[str, str] | None = None) -> list[Rejected]:
    """The rows among these (where, row) that an import would refuse, and why: what a preview shows
    before anything is imported."""
    reader = _RowReader(Path(path), fmt, field_map, None)
    problems = []
    for where, row in rows:
        try:
            reader.examples(where, row)
        except formats.RowError as e:
            problems.append(Rejected(where, e.field, str(e)))
    return problems


class _RowReader:
    """Turns a file's rows into Examples one at a time: maps fields, detects the shape from the first
    row (unless one was chosen) and holds every later row to it, and keeps row ids unique."""

    def __init__(self, path: Path, fmt: str | None, field_map: dict[str, str] | None, source: str | None):
        self.chosen = bool(fmt)
        self.shape = formats.shape(fmt) if fmt else None
        self.field_map, self.source, self.stem = field_map, source, path.stem
        self.seen_ids: dict[object, str] = {}

    def header_fits(self, names: list[str]) -> bool:
        """Whether a CSV header names the fields of the chosen shape (or of any shape)."""
        row = _mapped(dict.fromkeys(names, ""), self.field_map)
        return self.shape.matches(row) if self.shape else formats.detect(row) is not None

    def examples(self, where: str, row: object) -> list[Example]:
        """The Examples of one row, tagged with their source and where they came from; a RowError says
        why the row cannot be loaded."""
        if isinstance(row, Unreadable):
            raise formats.RowError(row.field, row.reason)
        if not isinstance(row, dict):
            raise formats.RowError(None, f"expected an object with the row's fields, got {kind(row)}")
        row = _mapped(row, self.field_map)
        found = self._shape_of(row).to_examples(row)
        tag = self.source or _row_source(row) or self.stem
        self._claim_id(row, where)
        for ex in found:
            ex.source = tag
            ex.meta["where"] = where
        return found

    def _shape_of(self, row: dict):
        """The file's shape: detected from the first row, which every later row must fit."""
        if self.shape is None:
            name = formats.detect(row)
            if name is None:
                if "instruction" in row and any(role in row for role in ROLES):
                    raise formats.RowError(None, "this is ranker training data (instruction, human, referenced, "
                                           "direct): train a ranker with it on the Train page (or `python -m "
                                           "scar_core train`); a data set to rank needs instruction/output "
                                           "rows or conversations")
                raise formats.RowError(None, f"unknown row shape with fields {_fields(row)}; "
                                       f"expected one of: {EXPECTED}")
            self.shape = formats.shape(name)
        elif not self.shape.matches(row):
            raise _misfit(row, self.shape, "chosen" if self.chosen else "detected from the first row")
        return self.shape

    def _claim_id(self, row: dict, where: str) -> None:
        row_id = _row_id(row)
        if row_id is None:
            return
        if row_id in self.seen_ids:
            raise formats.RowError("id", f"duplicate id {shown(row_id)}: {self.seen_ids[row_id]} has the "
                                   "same id; ids must be unique within a file")
        self.seen_ids[row_id] = where


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
