"""ShareGPT / Vicuna: {"id", "conversations": [{"from", "value"}, ...]}."""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats import conversation
from scar_core.formats.row import RowError, kind, shown, text, turn_list

NAME = "sharegpt"
FIELDS = ("conversations",)  # a row of this shape has all of these
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
         "system": "system"}


def matches(row: dict) -> bool:
    return all(f in row for f in FIELDS)


def to_examples(row: dict) -> list[Example]:
    turns = []
    for i, turn in enumerate(turn_list(row, "conversations")):
        field = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RowError(field, f"expected an object with 'from' and 'value', got {kind(turn)}")
        role = text(turn, "from", label=f"{field}.from")
        if role.lower() not in ROLES:
            raise RowError(f"{field}.from", f"unknown role {shown(role)}; expected one of {sorted(ROLES)}")
        value = text(turn, "value", allow_empty=True, label=f"{field}.value")
        turns.append((ROLES[role.lower()], value))
    meta = {k: v for k, v in row.items() if k != "conversations"}
    return conversation.to_examples(turns, "conversations", meta)


def from_example(ex: Example, score: float | None = None) -> dict:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    turns = ([{"from": "system", "value": ex.system}] if ex.system else []) + [
        {"from": names[t["role"]], "value": t["content"]} for t in conversation.dialogue(ex)]
    row = {"id": ex.id, "conversations": turns}
    if score is not None:
        row["score"] = score
    return row
