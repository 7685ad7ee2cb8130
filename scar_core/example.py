"""The unit of data everything else works on: one (instruction, response) pair."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass
class Example:
    """One scorable pair.

    `instruction` is the user turn being answered (an Alpaca `input` is joined to it);
    `context` holds the earlier turns of a conversation as {"role", "content"} dicts;
    `system` is a system prompt, kept as metadata and not shown to the ranker.
    """

    instruction: str
    response: str
    context: list[dict] = field(default_factory=list)
    system: str | None = None
    source: str | None = None
    meta: dict = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id(self.instruction, self.response, self.context, self.system)

    def ranker_instruction(self) -> str:
        """The text the ranker encodes as the instruction.

        Single-turn pairs give the instruction itself (as SCAR does). For a later turn of a
        conversation, the earlier turns come first, oldest to newest, so the ranker sees what
        the response answers; the scoring engine truncates such prompts from the left, which
        drops the oldest turns first and always keeps the turn being answered.
        """
        if not self.context:
            return self.instruction
        turns = [f"{t['role'].capitalize()}: {t['content']}" for t in self.context]
        return "\n\n".join(turns + [f"User: {self.instruction}"])

    def to_dict(self) -> dict:
        return {
            "id": self.id, "instruction": self.instruction, "response": self.response,
            "context": self.context, "system": self.system, "source": self.source, "meta": self.meta,
        }


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # reused: ids are computed for every loaded row


def content_id(instruction: str, response: str, context: list[dict] | None = None,
               system: str | None = None) -> str:
    """A stable id from the content alone, so scores can be reused across files and runs."""
    payload = _ENCODER.encode([system or "", context or [], instruction, response])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
