"""Alpaca: {"instruction", "input", "output"}; `input` is joined to the instruction."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats.row import text

NAME = "alpaca"
FIELDS = ("instruction", "output")  # a row of this shape has all of these
OPTIONAL = ("input",)  # read when present


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    instruction = text(row, "instruction")
    extra = text(row, "input", required=False)
    if extra.strip():
        instruction = f"{instruction}\n\n{extra}"
    meta = {k: v for k, v in row.items() if k not in ("instruction", "input", "output")}
    return [Example(instruction=instruction, response=text(row, "output"), meta=meta)]


def from_example(ex: Example, score: float | None = None) -> dict:
    row = {"instruction": ex.instruction, "input": "", "output": ex.response}
    if ex.context:
        row["history"] = [[a["content"], b["content"]] for a, b in zip(ex.context[::2], ex.context[1::2])]
    if ex.system:
        row["system"] = ex.system
    if score is not None:
        row["score"] = score
    return row
