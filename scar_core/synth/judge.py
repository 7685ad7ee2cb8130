"""Read the two 0-9 scores out of a judge's reply, whatever its layout.

Accepted: "Helpfulness: 7", "**Correctness** - 8/9", "helpfulness score of 6 out of 10" (rescaled
to 0-9), "Helpful: seven", JSON objects, and a reply that is just two numbers in the order asked.
Rubric echoes ("0-9", "0 = unusable") are ignored. A score that cannot be found, or lies outside
its scale, is None: missing, never 0, so training can skip it and the run can count it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(WORDS) + r")"
SCALE = r"(?:\s*(?:/|out\s+of|of)\s*(\d+))?"
RANGE = re.compile(r"[(\[]?\s*(?:on\s+a\s+scale\s+(?:of|from)\s+)?\b0\s*(?:-|–|to)\s*(?:9|10)\b\s*[)\]]?", re.I)
LABELS = {"helpfulness": r"help\w*", "correctness": r"(?:correct\w*|accura\w*)"}


@dataclass(frozen=True)
class Judgement:
    helpfulness: float | None
    correctness: float | None

    @property
    def complete(self) -> bool:
        return self.helpfulness is not None and self.correctness is not None

    @property
    def empty(self) -> bool:
        return self.helpfulness is None and self.correctness is None


def parse_judgement(reply: str) -> Judgement:
    """Both scores from a judge reply; each None where it cannot be read."""
    from_json = _json_scores(reply)
    if from_json is not None:
        return from_json
    text = RANGE.sub(" ", reply)
    scores = {name: _labelled(text, label) for name, label in LABELS.items()}
    if all(v is None for v in scores.values()):
        bare = re.fullmatch(rf"\s*{NUMBER}{SCALE}\s*[,;/\s]\s*{NUMBER}{SCALE}\s*\.?\s*", text, re.I)
        if bare:
            scores = {"helpfulness": _value(bare.group(1), bare.group(2)),
                      "correctness": _value(bare.group(3), bare.group(4))}
    return Judgement(**scores)


def _labelled(text: str, label: str) -> float | None:
    """The score after the last mention of `label` that is followed by a number within a few words."""
    gap = r"(?:(?!help|correct|accura)[^0-9\n]){0,30}?"  # a few words, never reaching the other label
    pattern = re.compile(rf"\b{label}\b{gap}\b{NUMBER}\b{SCALE}(?!\s*=)", re.I)
    found = [_value(m.group(1), m.group(2)) for m in pattern.finditer(text)]
    found = [v for v in found if v is not None]
    return found[-1] if found else None


def _value(number: str, scale: str | None) -> float | None:
    value = float(WORDS.get(number.lower(), number)) if not number.isdigit() else float(number)
    if scale is not None:
        top = float(scale)
        return round(value * 9 / top, 2) if 0 < top and 0 <= value <= top else None
    return value if 0 <= value <= 9 else None


def _json_scores(reply: str) -> Judgement | None:
    match = re.search(r"\{.*\}", reply, re.S)
    if not match:
        return None
    try:
        obj = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    found = {}
    for name, label in LABELS.items():
        for key, value in obj.items():
            if re.fullmatch(label, str(key).strip(), re.I) and isinstance(value, (int, float, str)) \
                    and not isinstance(value, bool):
                found[name] = _value(str(value).strip(), None) if re.fullmatch(NUMBER, str(value).strip(), re.I) \
                    else None
    return Judgement(found.get("helpfulness"), found.get("correctness")) if found else None
