"""Prompt/completion: {"prompt", "completion"}."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats.row import text

NAME = "prompt_completion"
FIELDS = ("prompt", "completion")  # a row of this shape has all of these


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    meta = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
    return [Example(instruction=text(row, "prompt"), response=text(row, "completion"), meta=meta)]


def from_example(ex: Example, score: float | None = None) -> dict:
    row = {"prompt": ex.ranker_instruction(), "completion": ex.response}
    if score is not None:
        row["score"] = score
    return row
