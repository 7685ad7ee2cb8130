"""Degenerate responses: echoes of the prompt, empty answers and refusals.

A ranker scores whatever text it is given, so a response that only repeats the instruction, holds no
text at all or declines the task can score like a real answer (an echo has no tokens of its own left
for the LM term, so that term counts it as average). These rules flag such rows, each with its
reason; `clean()` records how many each rule caught. Every rule reads the text only: no model.

**empty**: the response holds no letter, digit or symbol (emoji, math and currency signs count as
content): only whitespace, punctuation or invisible characters such as a zero-width space. There is
no word-count floor: "4", "Yes." or "Noun" are correct answers to short questions, and a one-word
reply to a long prompt ("Acknowledged.") is often what the prompt asked for.

**echo**: the response (at least MIN_WORDS words) is the prompt repeated. Words are case-folded
`\\w+` runs; a response word is *copied* from a text when it lies in a run of NGRAM consecutive
words that also occurs in that text; its *own* words are the rest, less a few filler words
("sure", "here", "is", ...). A response is an echo when its own words are at most OWN_SHARE of its
words (rounded down: none at all below 20 words), it repeats the instruction's first NGRAM words
(an echo repeats the request from where it starts), and either
  1. it is taken from the instruction's *opening* (its text up to the first sentence end, colon or
     line break: the request itself) and repeats at least OPENING_REPEATED of the opening's words; or
  2. it repeats the whole instruction: at least WHOLE_REPEATED of all its words and at least
     WHOLE_OPENING_REPEATED of its opening's.
Earlier *user* turns of a conversation are checked the same way. Requiring the opening keeps the
rule off answers built from a passage in the prompt: an extractive answer ("Ulaanbaatar is the
capital of Mongolia" after a passage about Mongolia) has words of its own against the question, a
corrected or reformatted passage does not repeat the request ("Correct the grammar: ..."), and a
long answer quoting a passage has text of its own, and an edited sentence quoted in the request ("Add
a comma to the sentence "The man went ..."") does not start with the request's first words. A response repeating an earlier *assistant* turn
is not flagged: in real conversations that is mostly a revision or the same answer to a repeated
question.

**refusal**: a response of at most REFUSAL_MAX_WORDS words whose first or second sentence starts
with one of REFUSAL_PATTERNS ("I'm sorry, but I can't ...", "As an AI language model, I cannot ...",
"I cannot provide ...", "... beyond the capability of the model ..."). Apologies followed by an answer
("I apologize for the confusion. Here is ...") and sympathy ("I'm sorry to hear that") do not match;
longer responses that decline one part and answer the rest are not flagged.

Each row gets at most one of these flags, checked in the order empty, echo, refusal.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from scar_core.errors import ScarError
from scar_core.example import Example

KINDS = ("echo", "empty", "refusal")
MODES = ("drop", "keep", "none")  # flag and leave out of cuts, flag and keep, do not check
OPTIONS = {"echo": "echoes", "empty": "empty", "refusal": "refusals"}  # flag kind -> option (CLI --echoes ...)
DEFAULTS = {"echoes": "drop", "empty": "drop", "refusals": "keep"}

WORD = re.compile(r"\w+")
NGRAM = 3
MIN_WORDS = 3
OWN_SHARE = 0.05
OPENING_REPEATED = 0.5
WHOLE_REPEATED = 0.6
WHOLE_OPENING_REPEATED = 0.8
FILLER = frozenset({"sure", "ok", "okay", "certainly", "here", "s", "is", "answer", "question"})
OPENING = re.compile(r"\s*(.*?)(?:[.?!:;](?:\s|$)|\n|$)", re.S)

REFUSAL_MAX_WORDS = 80
_I = r"\b(?:i|we)\b"
_CANT = (r"(?:cannot|can not|can't|won't|will not|must decline|(?:am|'m|are) (?:unable|not able) to|do not have|"
         r"don't have|(?:am|'m) not (?:allowed|permitted|programmed))")
_GAP = r"[^.!?:;\n]{0,40}?"  # what may stand between "I" and "can't" in one clause: "I am just a program and don't have"
_LEAD = r"(?:(?:however|unfortunately|but|sorry|i'm sorry|i am sorry|i apologi[sz]e|apologies|my apologies),?\s+)*"
_AI = (r"(?:ai|artificial intelligence|(?:ai |large |text-based )?language model|llm|computer program|chatbot|"
       r"(?:ai|virtual) assistant)")
_VERBS = (r"(?:help|assist|provide|comply|fulfil|fulfill|complete|do|answer|create|generate|write|support|engage|"
          r"give|share|browse|access|perform|make|offer|produce|draw|design|reproduce|discuss|participate|continue|"
          r"tell|predict|see|view|open|read|be of)")
REFUSAL_PATTERNS = {
    # "I'm sorry, but I can't ...", "I'm afraid I cannot ...", "Sorry, I am just a program and don't have ..."
    "sorry, I can't": rf"^(?:i'm |i am )?(?:very |so |really |truly )?(?:sorry|afraid)\b(?! to hear)[^.!?\n]{{0,30}}?"
                      rf"{_I}{_GAP}{_CANT}",
    # "I apologize, but I am unable to ...", "Apologies, but I don't have access ..."
    "I apologise, but I can't": rf"^(?:i apologi[sz]e|apologies|my apologies)\b(?:(?! for\b)[^.!?\n]{{0,30}}?|"
                                rf"[^.!?\n]{{0,60}}?\bbut\s+){_I}{_GAP}{_CANT}",
    # "As an AI language model, I cannot ...", "I'm just an AI, I don't have ...", "As I am a language model, ..."
    "as an AI, I can't": rf"^{_LEAD}(?:as an? {_AI}|as i am an? {_AI}|i'm (?:just |only )?an? {_AI}|"
                         rf"i am (?:just |only )?an? {_AI})\b[^.!?\n]{{0,80}}?{_I}{_GAP}{_CANT}",
    # "I cannot provide ...", "Unfortunately, I am unable to assist ...", "I won't help ..."
    "I can't help": rf"^{_LEAD}{_I}\s*(?:cannot|can not|can't|won't|will not|(?:am|'m|are) (?:unable|not able) to|"
                    rf"must decline to|refuse to)\s+{_VERBS}\b",
    # "It is not appropriate for me to ...", "It's not possible for me to ..."
    "not appropriate for me": rf"^{_LEAD}(?:it is|it's) not (?:appropriate|possible|ethical) for me to",
    # Alpaca's "This type of task is beyond the capability of the model"
    "beyond my capabilities": r"\bbeyond (?:the|my) (?:capabilit|abilit|scope)",
}
_REFUSALS = {name: re.compile(rx, re.I) for name, rx in REFUSAL_PATTERNS.items()}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

RULES = {"ngram": NGRAM, "echo_min_words": MIN_WORDS, "echo_own_share": OWN_SHARE,
         "echo_opening_repeated": OPENING_REPEATED, "echo_whole_repeated": WHOLE_REPEATED,
         "echo_whole_opening_repeated": WHOLE_OPENING_REPEATED, "refusal_max_words": REFUSAL_MAX_WORDS,
         "refusal_patterns": sorted(REFUSAL_PATTERNS)}


def check_modes(modes: dict[str, str]) -> None:
    for option, mode in modes.items():
        if mode not in MODES:
            raise ScarError(f"--{option} must be one of {', '.join(MODES)}, not {mode!r}")


# --- empty --------------------------------------------------------------------------------------

def _content(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN" or cat in ("So", "Sm", "Sc")


def is_empty(text: str) -> bool:
    """No letter, digit or symbol: only whitespace, punctuation and invisible characters."""
    return not any(map(_content, text))


# --- echo ---------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return WORD.findall(text.casefold())


def _grams(ws: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(ws[i:i + NGRAM]) for i in range(len(ws) - NGRAM + 1)}


def _copied(ws: Sequence[str], grams: set[tuple[str, ...]]) -> list[bool]:
    """Per word of `ws`: inside a run of NGRAM words found in `grams`."""
    out = [False] * len(ws)
    for i in range(len(ws) - NGRAM + 1):
        if tuple(ws[i:i + NGRAM]) in grams:
            out[i:i + NGRAM] = [True] * NGRAM
    return out


def own_words(response: Sequence[str], source: Sequence[str] | set) -> int:
    """Words of `response` not copied from `source` (words, or a set of its n-grams), fillers not counted."""
    grams = source if isinstance(source, set) else _grams(source)
    return sum(1 for w, c in zip(response, _copied(response, grams)) if not c and w not in FILLER)


def repeated(source: Sequence[str], response_grams: set) -> float:
    """Share of `source`'s words that the response repeats (in runs of NGRAM words)."""
    return sum(_copied(source, response_grams)) / len(source) if source else 0.0


def opening(text: str) -> str:
    """The text up to its first sentence end, colon, semicolon or line break."""
    return OPENING.match(text).group(1)


def _echo_of(text: str, response: list[str], response_grams: set, allow: int) -> tuple[str, float, int] | None:
    """(which part of `text`, how much of it the response repeats, the response's own words against it)
    when the response is an echo of `text` (rules 1 and 2 of the module docstring), else None."""
    head, whole = words(opening(text)), words(text)
    if tuple(whole[:NGRAM]) not in response_grams:  # an echo repeats the request from its first words
        return None
    head_repeated = repeated(head, response_grams) if len(head) >= NGRAM else 1.0  # within the first words
    if head_repeated >= OPENING_REPEATED and (own := own_words(response, head)) <= allow:
        return "opening" if len(head) < len(whole) else "whole", head_repeated, own
    if head_repeated >= WHOLE_OPENING_REPEATED:
        whole_repeated = repeated(whole, response_grams)
        if whole_repeated >= WHOLE_REPEATED and (own := own_words(response, whole)) <= allow:
            return "whole", whole_repeated, own
    return None


def echo(example: Example) -> dict | None:
    """The echo flag's facts for this pair, or None (see the module docstring)."""
    response = words(example.response)
    if len(response) < MIN_WORDS:
        return None
    allow = int(OWN_SHARE * len(response))
    sources = [("instruction", example.instruction)]
    sources += [(f"earlier user turn {i + 1}", t["content"]) for i, t in enumerate(example.context)
                if t.get("role") == "user"]
    everything = set().union(*(_grams(words(text)) for _, text in sources))
    if own_words(response, everything) > allow:  # fast exit: not even copied from all sources together
        return None
    response_grams = _grams(response)
    for name, text in sources:
        found = _echo_of(text, response, response_grams, allow)
        if found is not None:
            part, share, own = found
            source = f"the {name}" if part == "whole" else f"the opening of the {name}"
            return {"copied_from": f"{name} opening" if part == "opening" else name, "words": len(response),
                    "own_words": own, "repeated": round(share, 3),
                    "reason": f"repeats {share:.0%} of the words of {source}; {own} of its {len(response)} "
                              "words are its own"}
    return None


# --- refusal ------------------------------------------------------------------------------------

def refusal(text: str) -> str | None:
    """The name of the refusal pattern a short response starts with, or None."""
    text = text.strip().lstrip("\"'“”‘’*#> ").replace("’", "'")
    if len(text.split()) > REFUSAL_MAX_WORDS:
        return None
    for sentence in _SENTENCE_END.split(text[:500], maxsplit=2)[:2]:
        for name, rx in _REFUSALS.items():
            if rx.search(sentence):
                return name
    return None


# --- all three ----------------------------------------------------------------------------------

def flag_of(example: Example, modes: dict[str, str]) -> dict | None:
    """The degenerate flag of one pair, or None; `modes` maps each option (echoes, empty, refusals) to
    drop, keep or none."""
    def make(kind: str, facts: dict) -> dict:
        return {"kind": kind, **facts, "left_out": modes[OPTIONS[kind]] == "drop"}

    if modes["empty"] != "none" and is_empty(example.response):
        return make("empty", {"reason": "no letters, digits or symbols: only whitespace, punctuation or "
                                        "invisible characters"})
    if modes["echoes"] != "none" and (facts := echo(example)):
        return make("echo", facts)
    if modes["refusals"] != "none" and (pattern := refusal(example.response)):
        return make("refusal", {"pattern": pattern, "words": len(example.response.split()),
                                "reason": f"a short response that declines the task ({pattern} ...)"})
    return None


def flags(examples: Sequence[Example], echoes: str = DEFAULTS["echoes"], empty: str = DEFAULTS["empty"],
          refusals: str = DEFAULTS["refusals"]) -> dict[int, dict]:
    """{position: flag} for the degenerate pairs among `examples`."""
    modes = {"echoes": echoes, "empty": empty, "refusals": refusals}
    check_modes(modes)
    if all(m == "none" for m in modes.values()):
        return {}
    found = {}
    for i, ex in enumerate(examples):
        flag = flag_of(ex, modes)
        if flag is not None:
            found[i] = flag
    return found
