"""Row shapes of instruction data: detect a row's shape, turn rows into Examples and back.

Each shape is one module with `NAME`, `matches(row)`, `to_examples(row)` and `from_example(ex)`.
"""
from __future__ import annotations

from scar_core.errors import ScarError
from scar_core.formats import alpaca, messages, prompt_completion, sharegpt
from scar_core.formats.row import RowError, kind

SHAPES = {m.NAME: m for m in (alpaca, sharegpt, messages, prompt_completion)}


def detect(row: object) -> str | None:
    """The name of the first shape whose fields this row has, or None."""
    if not isinstance(row, dict):
        return None
    for name, shape in SHAPES.items():
        if shape.matches(row):
            return name
    return None


def fields(name: str) -> list[str]:
    """Every field a shape reads, required ones first (what a field map can rename onto)."""
    module = shape(name)
    return [*module.FIELDS, *getattr(module, "OPTIONAL", ())]


def shape(name: str):
    """The shape module called `name`."""
    try:
        return SHAPES[name]
    except KeyError:
        raise ScarError(f"unknown format '{name}'; choose one of: {', '.join(SHAPES)}") from None


__all__ = ["SHAPES", "RowError", "detect", "fields", "kind", "shape"]
