"""Field checks shared by every row shape."""
from __future__ import annotations

import math


class RowError(ValueError):
    """A row that cannot become an Example; `field` names the offending field."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


def kind(value: object) -> str:
    """What a JSON-like value is, in the words a user of the data would use."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float) and math.isnan(value):
        return "a number (NaN)"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def shown(value: object, limit: int = 40) -> str:
    """A short, escaped rendering of data for a message: long text is cut, control characters escaped."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return repr(cut)


def text(row: dict, field: str, required: bool = True, allow_empty: bool = False,
         label: str | None = None) -> str:
    """The string in `row[field]`, or a RowError (naming `label`, default `field`) saying what is wrong."""
    name = label or field
    if field not in row or row[field] is None:
        if required:
            raise RowError(name, "missing" if field not in row else "is null, expected text")
        return ""
    value = row[field]
    if not isinstance(value, str):
        if isinstance(value, float) and math.isnan(value) and not required:
            return ""
        raise RowError(name, f"expected text, got {kind(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RowError(name, f"holds an invalid character (a lone surrogate {value[e.start]!a} "
                           f"at position {e.start}); the file was probably written with broken escapes") from None
    if required and not allow_empty and not value.strip():
        raise RowError(name, "is empty" if not value else "is only whitespace")
    return value


def turn_list(row: dict, field: str) -> list:
    value = row.get(field)
    if not isinstance(value, list):
        raise RowError(field, f"expected a list of turns, got {kind(value)}")
    if not value:
        raise RowError(field, "has no turns")
    return value
