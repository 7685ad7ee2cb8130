"""Read the rows of a .json, .jsonl, .csv or .parquet file as a stream of (where, row).

`where` says where the row is ("line 12", "row 3", "row 3, line 9") for messages. A row that
cannot be parsed comes out as an `Unreadable` with the reason, so the loader can stop (strict)
or go on (lenient). Problems with the file as a whole raise InputError.

Nothing holds a whole file as both bytes and text: JSON Lines and CSV are decoded line by line,
and a JSON list is decoded in 1 MiB chunks and parsed element by element with the standard
library's JSON decoder, so memory is the parsed rows plus one chunk (or one row, if bigger).
"""
from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from scar_core.errors import InputError, ScarError
from scar_core.formats import detect

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
CHUNK = 1 << 20
UNPACK, UTF8 = "unpack or convert it first", "re-save it as UTF-8"
MAGIC = {b"PK\x03\x04": ("a zip archive", UNPACK), b"PK\x05\x06": ("a zip archive", UNPACK),
         b"\x1f\x8b": ("a gzip archive", UNPACK), b"\xfd7zXZ": ("an xz archive", UNPACK),
         b"BZh": ("a bzip2 archive", UNPACK), b"\x28\xb5\x2f\xfd": ("a zstd archive", UNPACK),
         b"PAR1": ("a Parquet file", "rename it to .parquet"), b"SQLite format 3": ("an SQLite database", UNPACK),
         b"\x89HDF": ("an HDF5 file", UNPACK), codecs.BOM_UTF16_LE: ("UTF-16 text", UTF8),
         codecs.BOM_UTF16_BE: ("UTF-16 text", UTF8)}
_SPACE = re.compile(r"[ \t\r\n]*")


class Unreadable:
    """A row that could not be parsed, with the reason (and the field, where there is one)."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason, self.field = reason, field


def read_rows(path: Path, header_fits: Callable[[list[str]], bool]) -> Iterator[tuple[str, object]]:
    """(where, row) for each row of `path`; `header_fits` tells whether a CSV first line names fields."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ScarError(f"{path}: unsupported file type '{suffix}'; expected one of {', '.join(SUFFIXES)}")
    with path.open("rb") as f:
        head = f.read(16)
    what, advice = next((found for magic, found in MAGIC.items() if head.startswith(magic)), (None, None))
    if suffix == ".parquet":
        if what != "a Parquet file":
            raise InputError(str(path), f"not a Parquet file ({what or 'no PAR1 signature'}); "
                             "check the file type" + ("" if what else " or whether the file is truncated"))
        return _parquet_rows(path)
    if what:
        raise InputError(str(path), f"this is {what}, not a {suffix} file; {advice}")
    return {".jsonl": _jsonl_rows, ".json": _json_rows}.get(suffix, lambda p: _csv_rows(p, header_fits))(path)


def utf8_problem(raw: bytes, error: UnicodeDecodeError) -> str:
    """Why these bytes are not UTF-8, with a guess at what they are."""
    bad = raw[error.start:error.end]
    guess = ""
    if b"\x00" not in raw:
        try:
            raw.decode("cp1252")
            guess = "; it looks like Latin-1/Windows-1252 text, "
        except UnicodeDecodeError:
            pass
    return (f"not valid UTF-8 ({bad!r} at byte {error.start} of the line){guess or '; '}"
            "re-save the file as UTF-8")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, object]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield where, Unreadable(utf8_problem(raw, e))
                continue
            if not line.strip():
                continue
            yield where, _parse_line(line)


def _parse_line(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        return Unreadable(f"invalid JSON at column {e.colno}: {_json_problem(e, line)}")
    except RecursionError:
        return Unreadable("JSON nested too deeply to read")


def _json_problem(error: json.JSONDecodeError, text: str) -> str:
    """The decoder's complaint, saying so when the text simply stops (a truncated file or line)."""
    ends = error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip()) - 1
    return error.msg.removesuffix(" starting at") + (" (the text stops here: truncated?)" if ends else "")


def _csv_rows(path: Path, header_fits: Callable[[list[str]], bool]) -> Iterator[tuple[str, object]]:
    bad_lines: dict[int, str] = {}

    def lines(f) -> Iterator[str]:
        for number, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                bad_lines[number] = utf8_problem(raw, e)
                yield raw.decode("utf-8", "replace")

    csv.field_size_limit(2**31 - 1)  # one field may hold a whole long response
    with path.open("rb") as f:
        reader = csv.reader(lines(f), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise InputError(str(path), f"not valid CSV: {e}", "line 1") from None
        if header is None:
            return
        if 1 in bad_lines:
            raise InputError(str(path), bad_lines[1], "line 1")
        if not header_fits(header):
            raise InputError(str(path), f"the first line {[h[:40] for h in header[:6]]} is not a header naming "
                             "the fields (instruction/output, conversations, messages or prompt/completion); "
                             "add a header line, or map your column names to these", "line 1")
        number = 0
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                number += 1
                yield f"row {number}, line {start}", Unreadable(f"not valid CSV: {e}")
                continue
            if not values:
                continue
            number += 1
            where = f"row {number}, line {start}"
            bad = [bad_lines.pop(n) for n in range(start, reader.line_num + 1) if n in bad_lines]
            if bad:
                yield where, Unreadable(bad[0])
            elif len(values) != len(header):
                yield where, Unreadable(f"has {len(values)} values, the header has {len(header)}")
            else:
                yield where, dict(zip(header, values))


def _parquet_rows(path: Path) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        batches = table.iter_batches(batch_size=4096)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"row {number}", row
    except (OSError, ValueError, ArithmeticError, KeyError, NotImplementedError) as e:
        # pyarrow's errors (ArrowInvalid, ArrowIOError, ...) derive from these builtins
        raise InputError(str(path), f"not a readable Parquet file ({str(e).splitlines()[0][:200]})") from None


class _JsonStream:
    """The decoded text of a JSON file, held one chunk (or one value) at a time."""

    def __init__(self, path: Path, f):
        self.path, self.f = path, f
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf, self.pos, self.eof = "", 0, False
        self.lines_before = 0  # newlines in the text dropped from the front of buf
        self.column_before = 0  # characters of buf's first line that were dropped
        self.bytes, self.byte_lines = 0, 0  # bytes and newlines decoded so far, for UTF-8 errors

    def fill(self, at_least: int = 1) -> bool:
        """Append at least `at_least` more characters (fewer at the end); False at the end."""
        if self.eof:
            return False
        self._drop_consumed()
        parts, added = [], 0
        while added < at_least and not self.eof:
            raw = self.f.read(max(CHUNK, at_least - added))
            self.eof = not raw
            try:
                text = self.decoder.decode(raw, final=self.eof)
            except UnicodeDecodeError as e:
                line = self.byte_lines + raw.count(b"\n", 0, max(0, e.start)) + 1
                problem = utf8_problem(raw, e).replace(f"byte {e.start} of the line", f"byte {self.bytes + e.start}")
                raise InputError(str(self.path), problem, f"line {line}") from None
            self.byte_lines += raw.count(b"\n")
            self.bytes += len(raw)
            parts.append(text)
            added += len(text)
        self.buf += "".join(parts)
        return added > 0

    def _drop_consumed(self) -> None:
        if self.pos < CHUNK:
            return
        gone = self.buf[:self.pos]
        newline = gone.rfind("\n")
        if newline >= 0:
            self.lines_before += gone.count("\n")
            self.column_before = len(gone) - newline - 1
        else:
            self.column_before += len(gone)
        self.buf, self.pos = self.buf[self.pos:], 0

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end), without consuming it."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def value(self) -> object:
        """Decode the JSON value at the current position, reading more text until it is complete."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number at the very end may go on
                    self.pos = end
                    return value
            except json.JSONDecodeError as e:
                incomplete = e.pos >= len(self.buf) - 16 or e.msg.startswith("Unterminated string")
                if self.eof or not incomplete:
                    raise
            self.fill(max(CHUNK, len(self.buf) - self.pos))

    def where(self, pos: int | None = None) -> str:
        pos = self.pos if pos is None else pos
        line_start = self.buf.rfind("\n", 0, pos) + 1
        line = self.lines_before + self.buf.count("\n", 0, pos) + 1
        column = pos - line_start + 1 + (self.column_before if line_start == 0 else 0)
        return f"line {line}, column {column}"


_DECODER = json.JSONDecoder()


def _json_rows(path: Path) -> Iterator[tuple[str, object]]:
    with path.open("rb") as f:
        s = _JsonStream(path, f)
        first = s.peek()
        if first == "{":
            yield from _json_object(s)
            return
        if first == "":
            raise InputError(str(path), "the file is empty (or only whitespace)")
        if first != "[":
            raise InputError(str(path), f"expected a JSON list of rows, but the file starts with {first!r}",
                             s.where())
        s.pos += 1
        number = 0
        if s.peek() == "]":
            return
        while True:
            number += 1
            s.peek()
            try:
                row = s.value()
            except json.JSONDecodeError as e:
                yield f"row {number}, {s.where(e.pos)}", Unreadable(f"invalid JSON: {_json_problem(e, s.buf)}")
                return
            except RecursionError:
                yield f"row {number}, {s.where()}", Unreadable("JSON nested too deeply to read")
                return
            yield f"row {number}", row
            after = s.peek()
            if after == ",":
                s.pos += 1
                continue
            if after == "]":
                s.pos += 1
                break
            problem = "the file ends before the list is closed (truncated?)" if after == "" else \
                f"expected ',' or ']' after the row, found {after!r}"
            yield f"after row {number}, {s.where()}", Unreadable(f"invalid JSON: {problem}")
            return
        if s.peek():
            yield f"after the list, {s.where()}", Unreadable("invalid JSON: more data after the closing ']'")


def _json_object(s: _JsonStream) -> Iterator[tuple[str, object]]:
    """A file holding one object: a single row, rows under its only list-valued key, or JSON Lines."""
    while s.fill(CHUNK):
        pass
    try:
        data = s.value()
    except json.JSONDecodeError as e:
        raise InputError(str(s.path), f"invalid JSON: {e.msg}", s.where(e.pos)) from None
    except RecursionError:
        raise InputError(str(s.path), "JSON nested too deeply to read") from None
    if s.peek():  # several values: this is JSON Lines under a .json name
        s.buf = ""
        yield from _jsonl_rows(s.path)
        return
    lists = [k for k, v in data.items() if isinstance(v, list)]
    if detect(data) is not None:
        yield "row 1", data
    elif len(lists) == 1:
        for number, row in enumerate(data[lists[0]], 1):
            yield f"row {number}", row
    else:
        keys = ", ".join(repr(k[:30]) for k in list(data)[:8])
        raise InputError(str(s.path), f"expected a JSON list of rows, got an object with keys [{keys}]"
                         + (f" and several lists {lists[:8]}; pick one" if lists else ""))


__all__ = ["CHUNK", "SUFFIXES", "Unreadable", "read_rows", "utf8_problem"]
