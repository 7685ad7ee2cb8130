"""Conversations to pairs: the policy shared by the ShareGPT and OpenAI-messages shapes.

Every assistant turn that directly follows a user turn is one scorable pair: that user turn is
the instruction and all earlier turns are the context. Assistant turns with no user turn before
them (conversations that start mid-way) are kept as context only. A system message is metadata.
A conversation with no scorable turn, two turns of the same role in a row, an unknown role or an
empty turn is rejected as a whole, because which text answers which becomes ambiguous.
"""
from __future__ import annotations

from scar_core.example import Example
from scar_core.formats.row import RowError, kind, shown, text, turn_list


def examples_from_row(row: dict, field: str, role_key: str, text_key: str, roles: dict[str, str],
                      fold_case: bool = False) -> list[Example]:
    """Examples from a row whose `field` lists turns as {role_key: ..., text_key: ...} objects;
    `roles` maps the shape's role names to user/assistant/system."""
    turns = []
    for i, turn in enumerate(turn_list(row, field)):
        where = f"{field}[{i}]"
        if not isinstance(turn, dict):
            raise RowError(where, f"expected an object with '{role_key}' and '{text_key}', got {kind(turn)}")
        role = text(turn, role_key, label=f"{where}.{role_key}")
        name = role.lower() if fold_case else role
        if name not in roles:
            raise RowError(f"{where}.{role_key}", f"unknown role {shown(role)}; expected one of {sorted(roles)}")
        turns.append((roles[name], text(turn, text_key, allow_empty=True, label=f"{where}.{text_key}")))
    return to_examples(turns, field, {k: v for k, v in row.items() if k != field})


def to_examples(turns: list[tuple[str, str]], field: str, meta: dict) -> list[Example]:
    """`turns` are (role, text) with role in user/assistant/system, in order."""
    system = None
    dialogue: list[dict] = []
    for i, (role, content) in enumerate(turns):
        if role == "system":
            if dialogue:
                raise RowError(f"{field}[{i}]", "system message after the conversation started")
            system = content
            continue
        if not content.strip():
            raise RowError(f"{field}[{i}]", f"empty {role} turn")
        if dialogue and dialogue[-1]["role"] == role:
            raise RowError(f"{field}[{i}]", f"two {role} turns in a row")
        dialogue.append({"role": role, "content": content})
    examples = []
    for i, turn in enumerate(dialogue):
        if turn["role"] == "assistant" and i > 0 and dialogue[i - 1]["role"] == "user":
            examples.append(Example(instruction=dialogue[i - 1]["content"], response=turn["content"],
                                    context=dialogue[: i - 1], system=system,
                                    meta={**meta, "turn": len(examples)}))
    if not examples:
        raise RowError(field, "no assistant turn answers a user turn")
    return examples


def dialogue(ex: Example) -> list[dict]:
    """The conversation up to and including this example's response."""
    return [*ex.context, {"role": "user", "content": ex.instruction},
            {"role": "assistant", "content": ex.response}]
