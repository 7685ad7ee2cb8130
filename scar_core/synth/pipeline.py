"""Human pairs -> SCAR training rows: generate referenced and direct responses, judge all three,
write JSONL in the schema `scar_core.training_data` reads.

Every LLM call goes through the on-disk cache first, so running the same command again after an
interruption (a crash, Ctrl-C, a server that went away) sends only the calls that never finished.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scar_core.example import Example
from scar_core.export import write_atomic
from scar_core.synth.cache import CallCache, ask
from scar_core.synth.client import Client
from scar_core.synth.judge import Judgement, parse_judgement
from scar_core.synth.prompts import DIRECT, JUDGE, REFERENCED, Messages, strip_echoed_heading

ROLES = ("human", "referenced", "direct")
TEMPERATURE = 0.0


@dataclass
class SynthProgress:
    """What a progress callback receives after each finished call (and once when a phase starts)."""

    phase: str      # "generate" (referenced + direct responses) or "judge"
    done: int       # calls finished in this phase, cached ones included
    total: int
    cached: int     # calls of this phase answered from the cache


@dataclass
class SynthSummary:
    out: str
    cache: str
    backend: str
    model: str
    pairs: int
    calls: int = 0
    cached_calls: int = 0
    new_calls: int = 0
    empty_responses: int = 0          # generations that came back empty (left out of the row)
    judge_replies: int = 0
    judge_unparseable: int = 0        # neither score could be read: both recorded as missing
    judge_partial: int = 0            # one of the two scores could be read
    unparseable_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def synthesize(human_pairs: Sequence[Example], backend: Client, out: str | Path, judge: bool = True,
               progress: Callable[[SynthProgress], None] | None = None, cache_path: str | Path | None = None,
               max_tokens: int = 512, judge_max_tokens: int = 64) -> SynthSummary:
    """Write one training row per human pair to `out` and return counts.

    cache_path defaults to `<out>.cache.sqlite`. Raising inside `progress` stops the run; finished
    calls stay cached."""
    start = time.perf_counter()
    out = Path(out)
    cache_path = Path(cache_path) if cache_path else out.with_name(out.name + ".cache.sqlite")
    summary = SynthSummary(str(out), str(cache_path), backend.name, backend.model, len(human_pairs))
    cache = CallCache(cache_path)
    try:
        calls = []
        for ex in human_pairs:
            calls.append((REFERENCED.kind, REFERENCED.messages(instruction=ex.ranker_instruction(),
                                                               reference=ex.response)))
            calls.append((DIRECT.kind, _direct_messages(ex)))
        replies = _run(backend, cache, calls, max_tokens, "generate", progress, summary)
        rows = []
        for i, ex in enumerate(human_pairs):
            referenced, direct = strip_echoed_heading(replies[2 * i]) or None, replies[2 * i + 1].strip() or None
            summary.empty_responses += (referenced is None) + (direct is None)
            rows.append({"id": ex.id, "instruction": ex.ranker_instruction(), "human": ex.response,
                         "referenced": referenced, "direct": direct, "source": ex.source})
        if judge:
            _judge(backend, cache, rows, judge_max_tokens, progress, summary)
        write_atomic(out, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    finally:
        cache.close()
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary


def _direct_messages(ex: Example) -> Messages:
    """The instruction as the user would send it: system prompt and earlier turns kept."""
    system = [{"role": "system", "content": ex.system}] if ex.system else []
    return system + [{"role": t["role"], "content": t["content"]} for t in ex.context] \
        + DIRECT.messages(instruction=ex.instruction)


def _judge(backend: Client, cache: CallCache, rows: list[dict], max_tokens: int,
           progress: Callable[[SynthProgress], None] | None, summary: SynthSummary) -> None:
    """Add <role>_helpfulness and <role>_correctness to every row (None where missing or unreadable)."""
    targets = [(r, role) for r in rows for role in ROLES if r[role]]
    calls = [(JUDGE.kind, JUDGE.messages(instruction=r["instruction"], response=r[role])) for r, role in targets]
    replies = _run(backend, cache, calls, max_tokens, "judge", progress, summary)
    for row in rows:
        for role in ROLES:
            row[f"{role}_helpfulness"] = row[f"{role}_correctness"] = None
    for (row, role), reply in zip(targets, replies):
        verdict: Judgement = parse_judgement(reply)
        row[f"{role}_helpfulness"], row[f"{role}_correctness"] = verdict.helpfulness, verdict.correctness
        summary.judge_replies += 1
        if verdict.empty:
            summary.judge_unparseable += 1
            if len(summary.unparseable_examples) < 5:
                summary.unparseable_examples.append(reply[:200])
        elif not verdict.complete:
            summary.judge_partial += 1


def _run(backend: Client, cache: CallCache, calls: list[tuple[str, Messages]], max_tokens: int, phase: str,
         progress: Callable[[SynthProgress], None] | None, summary: SynthSummary) -> list[str]:
    """Replies to `calls` in order, through the call cache (scar_core.synth.cache.ask), with progress."""
    state = SynthProgress(phase, 0, len(calls), 0)
    summary.calls += len(calls)

    def cached(count: int) -> None:
        summary.cached_calls += count
        state.done = state.cached = count
        if progress:
            progress(state)

    def replied() -> None:
        summary.new_calls += 1
        state.done += 1
        if progress:
            progress(state)

    return ask(backend, cache, calls, TEMPERATURE, max_tokens, cached, replied)[0]
