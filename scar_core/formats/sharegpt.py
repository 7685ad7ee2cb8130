"""ShareGPT / Vicuna: {"id", "conversations": [{"from", "value"}, ...]}."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats import conversation

NAME = "sharegpt"
FIELDS = ("conversations",)  # a row of this shape has all of these
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
         "system": "system"}


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    return conversation.examples_from_row(row, "conversations", "from", "value", ROLES, fold_case=True)


def from_example(ex: Example, score: float | None = None) -> dict:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    turns = ([{"from": "system", "value": ex.system}] if ex.system else []) + [
        {"from": names[t["role"]], "value": t["content"]} for t in conversation.dialogue(ex)]
    row = {"id": ex.id, "conversations": turns}
    if score is not None:
        row["score"] = score
    return row
