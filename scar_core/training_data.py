"""Ranker training rows and SCAR's pair selection.

A training row is one JSON object per line:
  instruction          the prompt (required, non-empty text)
  human                a human-written answer                      (text, null or missing)
  referenced           an LLM rewrite of the human answer          (text, null or missing)
  direct               an LLM's own answer to the instruction      (text, null or missing)
  source               optional tag, e.g. "hc3/finance" (used for filtering and per-source figures)
Optional quality of each response, on SCAR's 0-9 scale, in one of two forms per response:
  <role>_score                                   one number, e.g. "direct_score": 7.5
  <role>_helpfulness and/or <role>_correctness   averaged, as SCAR averages its two judgements
Empty or whitespace-only responses count as missing. A row contributes only the pairs it has.
"""
from __future__ import annotations

import fnmatch
import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scar_core.errors import InputError, ScarError
from scar_core.formats.reader import utf8_problem

ROLES = ("human", "referenced", "direct")
# SCAR's ordered pairs (more consistent style first): direct > referenced > human.
PAIRS = (("direct", "referenced"), ("referenced", "human"), ("direct", "human"))
PAIR_NAMES = {("direct", "referenced"): "d>r", ("referenced", "human"): "r>h", ("direct", "human"): "d>h"}
QUALITY_MODES = ("abs", "abs_pos", "diff", "abs_diff", "none")


@dataclass
class TrainRow:
    instruction: str
    responses: dict[str, str]                      # role -> text, only the roles present
    quality: dict[str, float] = field(default_factory=dict)  # role -> score, only where given
    source: str | None = None
    where: str = ""                                # "file, line N", for messages

    def pairs(self) -> list[tuple[str, str]]:
        """The ordered (better, worse) role pairs this row has, with differing texts."""
        return [(a, b) for a, b in PAIRS
                if a in self.responses and b in self.responses and self.responses[a] != self.responses[b]]


def read_training_rows(paths: Sequence[str | Path], sources: Sequence[str] = (),
              exclude_sources: Sequence[str] = ()) -> list[TrainRow]:
    """Rows from JSONL files, optionally kept/dropped by `source` glob patterns (e.g. "hc3/*").

    Raises InputError naming file, line and field for the first bad row."""
    rows: list[TrainRow] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ScarError(f"{path}: no such file")
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:  # decoded per line, so a bad byte is reported with its line; a leading BOM is allowed
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise InputError(path, utf8_problem(raw, e), f"line {number}") from None
                if line.strip():
                    rows.append(parse_row(line, path, number))
    if sources:
        rows = [r for r in rows if source_matches(r.source, sources)]
    if exclude_sources:
        rows = [r for r in rows if not source_matches(r.source, exclude_sources)]
    return rows


def source_matches(source: str | None, patterns: Iterable[str]) -> bool:
    """Whether a row's `source` tag matches any of the glob patterns (e.g. "hc3/*")."""
    return any(fnmatch.fnmatchcase(source or "", p) for p in patterns)


def parse_row(line: str, path: str | Path, number: int) -> TrainRow:
    where = f"line {number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", where) from None
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a JSON object, got {type(obj).__name__}", where)
    instruction = obj.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise InputError(path, "must be non-empty text", where, "instruction")
    responses = {}
    for role in ROLES:
        text = obj.get(role)
        if text is not None and not isinstance(text, str):
            raise InputError(path, f"must be text or null, got {type(text).__name__}", where, role)
        if text and text.strip():
            responses[role] = text
    source = obj.get("source")
    if source is not None and not isinstance(source, str):
        raise InputError(path, f"must be text or null, got {type(source).__name__}", where, "source")
    quality = {role: q for role in ROLES if (q := _quality(obj, role, path, where)) is not None}
    return TrainRow(instruction, responses, quality, source, f"{path}, {where}")


def _quality(obj: dict, role: str, path, where: str) -> float | None:
    single = _number(obj, f"{role}_score", path, where)
    parts = [v for k in (f"{role}_helpfulness", f"{role}_correctness")
             if (v := _number(obj, k, path, where)) is not None]
    if single is not None and parts:
        raise InputError(path, f"give either {role}_score or {role}_helpfulness/{role}_correctness, not both",
                         where, f"{role}_score")
    return single if single is not None else (sum(parts) / len(parts) if parts else None)


def _number(obj: dict, key: str, path, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"must be a number, got {type(value).__name__} {value!r}", where, key)
    if not math.isfinite(value):
        raise InputError(path, f"must be a finite number, got {value}", where, key)
    return float(value)


def quality_allows(mode: str, better: float | None, worse: float | None,
                   minimum: float = 5.0, maximum: float = 10.0) -> bool:
    """SCAR's quality constraint on one (better, worse) pair of response scores.

    abs:      both scores strictly between minimum and maximum (SCAR's default)
    abs_pos:  the better response's score strictly between minimum and maximum
    diff:     the scores differ by less than `maximum`
    abs_diff: abs and diff together
    none:     no constraint
    A check whose scores are missing is skipped (rows without scores are not filtered)."""
    if mode not in QUALITY_MODES:
        raise ScarError(f"unknown quality mode '{mode}'; choose one of {', '.join(QUALITY_MODES)}")
    if mode == "none":
        return True
    if mode == "abs_pos":
        return better is None or minimum < better < maximum
    if better is None or worse is None:
        return True
    within = minimum < min(better, worse) and max(better, worse) < maximum
    close = abs(better - worse) < maximum
    return {"abs": within, "diff": close, "abs_diff": within and close}[mode]


def training_pairs(row: TrainRow, mode: str = "abs", minimum: float = 5.0,
                   maximum: float = 10.0) -> list[tuple[str, str]]:
    """The (better, worse) pairs of a row that enter the ranking loss: texts differ and quality allows."""
    return [(a, b) for a, b in row.pairs()
            if quality_allows(mode, row.quality.get(a), row.quality.get(b), minimum, maximum)]


SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


def length_debiased(rows: Sequence[TrainRow], seed: int = 0,
                    low: float = 0.5, high: float = 0.95) -> list[TrainRow]:
    """Extra rows that stop answer length from predicting the label.

    In most public human-vs-LLM data the LLM answer is the longer one, so a ranker can score
    "longer is better" and fail wherever human answers are long (encyclopedic prose, expert
    replies). For each row whose direct answer is at least 0.9x as long as its human answer this
    adds a row with the direct answer cut, at a sentence end, to a random `low`-`high` share of
    the human answer's length: the same LLM voice, now the shorter text. Rows whose first
    sentence is already too long add nothing. Only the direct > human pair is kept."""
    rng = random.Random(seed)
    extra = []
    for row in rows:
        human, direct = row.responses.get("human"), row.responses.get("direct")
        if not human or not direct or len(direct) < 0.9 * len(human):
            continue
        cut = _sentence_prefix(direct, int(len(human) * rng.uniform(low, high)))
        if cut and len(cut) < len(human):
            extra.append(TrainRow(row.instruction, {"human": human, "direct": cut}, dict(row.quality),
                                  row.source, f"{row.where} (direct answer shortened)"))
    return extra


def _sentence_prefix(text: str, limit: int) -> str | None:
    """The longest run of whole leading sentences of `text` within `limit` characters, or None."""
    kept = ""
    for sentence in filter(str.strip, SENTENCE_END.split(text)):
        longer = f"{kept} {sentence}" if kept else sentence
        if len(longer) > limit:
            break
        kept = longer
    return kept or None
