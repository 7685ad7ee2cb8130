"""OpenAI chat: {"messages": [{"role", "content"}, ...]}, an optional system message kept as metadata."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats import conversation
from scar_core.formats.row import RowError, kind, shown, text, turn_list

NAME = "messages"
FIELDS = ("messages",)  # a row of this shape has all of these
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    turns = []
    for i, turn in enumerate(turn_list(row, "messages")):
        field = f"messages[{i}]"
        if not isinstance(turn, dict):
            raise RowError(field, f"expected an object with 'role' and 'content', got {kind(turn)}")
        role = text(turn, "role", label=f"{field}.role")
        if role not in ROLES:
            raise RowError(f"{field}.role", f"unknown role {shown(role)}; expected one of {sorted(ROLES)}")
        content = text(turn, "content", allow_empty=True, label=f"{field}.content")
        turns.append((ROLES[role], content))
    meta = {k: v for k, v in row.items() if k != "messages"}
    return conversation.to_examples(turns, "messages", meta)


def from_example(ex: Example, score: float | None = None) -> dict:
    msgs = ([{"role": "system", "content": ex.system}] if ex.system else []) + conversation.dialogue(ex)
    row = {"messages": msgs}
    if score is not None:
        row["score"] = score
    return row
