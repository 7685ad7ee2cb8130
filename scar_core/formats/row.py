"""Field checks shared by every row shape."""
from __future__ import annotations

import math


class RowError(ValueError):
    """A row that cannot become an Example; `field` names the offending field."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


def text(row: dict, field: str, required: bool = True, allow_empty: bool = False) -> str:
    """The string in `row[field]`, or a RowError saying what is wrong with it."""
    if field not in row or row[field] is None:
        if required:
            raise RowError(field, "missing" if field not in row else "is null, expected text")
        return ""
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, str):
        if isinstance(value, float) and math.isnan(value) and not required:
            return ""
        raise RowError(field, f"expected text, got {type(value).__name__}")
    if required and not allow_empty and not value.strip():
        raise RowError(field, "is empty" if not value else "is only whitespace")
    return value


def turn_list(row: dict, field: str) -> list:
    value = row.get(field)
    if not isinstance(value, list):
        raise RowError(field, f"expected a list of turns, got {type(value).__name__}")
    if not value:
        raise RowError(field, "has no turns")
    return value
