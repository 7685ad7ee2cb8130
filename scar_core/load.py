"""Load step: read .json, .jsonl, .csv or .parquet files into Examples.

The row shape (Alpaca, ShareGPT, OpenAI messages, prompt/completion) is detected from the first
row unless given. Strict mode stops at the first bad row with an InputError naming the file, the
line or row and the field; lenient mode keeps every valid row and reports the others.
"""
from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from scar_core import formats
from scar_core.errors import InputError, ScarError
from scar_core.example import Example

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


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
    """
    path = Path(path)
    if not path.is_file():
        raise ScarError(f"{path}: no such file")
    shape = formats.shape(fmt) if fmt else None
    examples: list[Example] = []
    rejected: list[Rejected] = []
    rows = 0
    for where, row in _rows(path):
        rows += 1
        try:
            if isinstance(row, _BadRow):
                raise formats.RowError(None, row.reason)
            if not isinstance(row, dict):
                raise formats.RowError(None, f"expected an object, got {type(row).__name__}")
            if field_map:
                row = {**{k: v for k, v in row.items() if k not in field_map.values()},
                       **{target: row[src] for target, src in field_map.items() if src in row}}
            if shape is None:
                name = formats.detect(row)
                if name is None:
                    raise formats.RowError(None, "unknown row shape with fields "
                                           f"{sorted(row)}; expected one of: {_expected()}")
                shape = formats.shape(name)
            elif not shape.matches(row):
                raise formats.RowError(None, f"fields {sorted(row)} do not fit the {shape.NAME} "
                                       f"format detected from the first row")
            found = shape.to_examples(row)
        except formats.RowError as e:
            if not lenient:
                raise InputError(str(path), str(e), where, e.field) from None
            rejected.append(Rejected(where, e.field, str(e)))
            continue
        tag = source or _row_source(row) or path.stem
        for ex in found:
            ex.source = tag
            ex.meta["where"] = where
        examples.extend(found)
    if rows == 0:
        raise ScarError(f"{path}: the file holds no rows")
    if not examples:
        first = rejected[0].message(str(path)) if rejected else ""
        raise ScarError(f"{path}: no valid rows ({len(rejected)} rejected). First problem: {first}")
    return LoadResult(str(path), shape.NAME, examples, rows, rejected)


def _expected() -> str:
    return "instruction/output (alpaca), conversations (sharegpt), messages, prompt/completion"


def _row_source(row: dict) -> str | None:
    for key in ("source", "dataset"):
        if isinstance(row.get(key), str) and row[key]:
            return row[key]
    return None


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ScarError(f"{path}: unsupported file type '{suffix}'; expected one of {', '.join(SUFFIXES)}")
    if zipfile.is_zipfile(path):
        raise InputError(str(path), f"this is a zip archive, not a {suffix} file; unpack it first")
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    if suffix == ".json":
        return _json_rows(path)
    if suffix == ".csv":
        return _csv_rows(path)
    return _parquet_rows(path)


def _decode(path: Path, raw: bytes, where: str | None) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8 (byte {e.start} of this {'line' if where else 'file'}); "
                         "re-save the file as UTF-8", where) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[str, object]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"line {number}"
            line = _decode(path, raw, where).strip()
            if not line:
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                hint = " (truncated line?)" if "Unterminated" in e.msg or "Expecting" in e.msg else ""
                yield where, _BadRow(f"invalid JSON at column {e.colno}: {e.msg}{hint}")


def _json_rows(path: Path) -> Iterator[tuple[str, object]]:
    text = _decode(path, path.read_bytes(), None)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            raise InputError(str(path), "more than one JSON value; is this JSON Lines? "
                             "rename it to .jsonl", f"line {e.lineno}") from None
        raise InputError(str(path), f"invalid JSON at column {e.colno}: {e.msg}", f"line {e.lineno}") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if formats.detect(data) is not None:
            data = [data]
        elif len(lists) == 1:
            data = data[lists[0]]
        else:
            raise InputError(str(path), "expected a JSON list of rows, got an object"
                             + (f" with lists {lists}" if lists else ""))
    if not isinstance(data, list):
        raise InputError(str(path), f"expected a JSON list of rows, got {type(data).__name__}")
    for number, row in enumerate(data, 1):
        yield f"row {number}", row


def _csv_rows(path: Path) -> Iterator[tuple[str, object]]:
    text = _decode(path, path.read_bytes(), None)
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if header is None:
        return
    if formats.detect(dict.fromkeys(header)) is None:
        raise InputError(str(path), f"the first line {header[:6]} is not a header naming the fields "
                         f"({_expected()})", "line 1")
    for number, values in enumerate(reader, 2):
        if len(values) != len(header):
            yield f"row {number}", _BadRow(f"has {len(values)} values, the header has {len(header)}")
            continue
        yield f"row {number}", dict(zip(header, values))


def _parquet_rows(path: Path) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputError(str(path), f"not a readable Parquet file ({e})") from None
    number = 0
    for batch in table.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield f"row {number}", row


class _BadRow(dict):
    """A placeholder for a row that could not be parsed; it fails shape detection with its reason."""

    def __init__(self, reason: str):
        super().__init__()
        self.reason = reason
