"""OpenAI chat: {"messages": [{"role", "content"}, ...]}, an optional system message kept as metadata."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats import conversation

NAME = "messages"
FIELDS = ("messages",)  # a row of this shape has all of these
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    return conversation.examples_from_row(row, "messages", "role", "content", ROLES)


def from_example(ex: Example, score: float | None = None) -> dict:
    msgs = ([{"role": "system", "content": ex.system}] if ex.system else []) + conversation.dialogue(ex)
    row = {"messages": msgs}
    if score is not None:
        row["score"] = score
    return row
