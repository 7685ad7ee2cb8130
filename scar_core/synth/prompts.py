"""Every prompt the synthesis pipeline sends, in one place so users can read what the LLM is asked.

Written for this project from SCAR's description of its data (Li et al., ACL 2025): a referenced
response keeps the human answer's content but is worded by the LLM, without letting on that it had
an example to work from; a direct response is the LLM's own answer; the judge rates helpfulness
and correctness on 0-9 so that training compares only responses of adequate quality.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Prompt:
    """A chat prompt: an optional system message and a user message with {named} fields."""

    kind: str
    purpose: str
    user: str
    system: str | None = None

    def messages(self, **fields: str) -> Messages:
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return turns + [{"role": "user", "content": self.user.format(**fields)}]


REFERENCED = Prompt(
    kind="referenced",
    purpose="the human answer rewritten by the LLM: same content, the LLM's own wording and layout",
    system="You answer requests clearly and accurately.",
    user=(
        "Answer the request below. A draft answer is attached: your answer must carry the same "
        "facts, steps and conclusions as the draft and nothing the draft does not support, but "
        "word and arrange it the way you naturally would. Reply with your answer only. Do not "
        "mention the draft, do not say that you are rewriting anything, and do not add a preface.\n\n"
        "Request:\n{instruction}\n\n"
        "Draft answer:\n{reference}"
    ),
)
# Small models sometimes open their rewrite by echoing a heading of the prompt above.
ECHOED_HEADING = re.compile(r"\A\s*(?:\*\*)?(?:draft answer|answer|request)(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.I)

DIRECT = Prompt(
    kind="direct",
    purpose="the LLM's own answer to the instruction (sent as-is, temperature 0)",
    user="{instruction}",
)

JUDGE = Prompt(
    kind="judge",
    purpose="scores one response for helpfulness and correctness, each 0-9",
    system="You grade answers strictly and reply only in the requested format.",
    user=(
        "Grade the answer to the request below on two criteria, each a whole number from 0 to 9.\n"
        "Helpfulness: does it do what the request asks, completely, with useful detail and clear "
        "organisation? 0 means it ignores the request or is unusable; 5 means it partly helps; "
        "9 means it fully meets the request.\n"
        "Correctness: are its facts, reasoning, figures and code right? 0 means mostly wrong; "
        "5 means a mix of right and wrong; 9 means nothing wrong.\n\n"
        "Request:\n{instruction}\n\n"
        "Answer:\n{response}\n\n"
        "Reply with exactly two lines and nothing else:\n"
        "Helpfulness: <number>\n"
        "Correctness: <number>"
    ),
)

PROMPTS = {p.kind: p for p in (REFERENCED, DIRECT, JUDGE)}


def strip_echoed_heading(reply: str) -> str:
    """A referenced response without a leading "Draft answer:" (or "Answer:") copied from the prompt,
    so the rewrite does not give away that it saw the human answer."""
    return ECHOED_HEADING.sub("", reply, count=1).strip()


def describe() -> str:
    """All prompts as readable text, for `python -m scar_core synth --show-prompts` and the app."""
    parts = []
    for p in PROMPTS.values():
        lines = [f"=== {p.kind}: {p.purpose}"]
        if p.system:
            lines += ["--- system", p.system]
        lines += ["--- user", p.user]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
