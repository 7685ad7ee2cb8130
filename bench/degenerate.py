"""Degenerate responses on the real pools: how many rows each flag (echo, empty, refusal) catches, and
a few caught rows per flag and pool to judge precision by eye. No model is loaded: it takes seconds.

    python bench/degenerate.py [--pools FILE ...] [--show 3] [--seed 0] [--width 110]

By default every pool in ../shared/data/pools (Dolly, Alpaca, LIMA, ShareGPT, CodeAlpaca, AlpacaEval),
loaded with scar_core.load.load (lenient). For each pool: rows, the count per flag, the seconds the
check took, then `--show` caught rows per flag (a seeded random sample: instruction and response
snippets, and the flag's reason). It also counts what the rules deliberately leave alone: replies of
one or two words to instructions of 50 words or more ("Acknowledged.", "Two times"), which are
often what was asked. And it measures recall on made-up echoes: each pool's own instructions given
back as their response, verbatim, after "Sure! ", and cut to their opening (first sentence or line;
only where that is 3 words or more). The last line is one JSON object with the counts.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scar_core.clean import degenerate  # noqa: E402
from scar_core.example import Example  # noqa: E402
from scar_core.load import load  # noqa: E402

POOLS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pools"


def snippet(text: str, width: int) -> str:
    flat = " ".join(text.split()) or repr(text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def synthetic_echoes(examples: list[Example]) -> dict[str, str]:
    """Share of made-up echoes of the pool's instructions that the echo rule catches, per kind of echo."""
    made = {"verbatim": [ex.instruction for ex in examples],
            "after 'Sure! '": ["Sure! " + ex.instruction for ex in examples],
            "opening only": [degenerate.opening(ex.instruction) for ex in examples
                             if len(degenerate.words(degenerate.opening(ex.instruction))) >= degenerate.MIN_WORDS]}
    out = {}
    for name, responses in made.items():
        caught = sum(degenerate.echo(Example(instruction=ex.instruction, response=r, context=ex.context,
                                             id="x")) is not None
                     for ex, r in zip(examples if name != "opening only" else
                                      [e for e in examples if len(degenerate.words(degenerate.opening(e.instruction)))
                                       >= degenerate.MIN_WORDS], responses))
        out[name] = f"{caught}/{len(responses)}"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pools", nargs="+", type=Path, help="pool files (default: every file in ../shared/data/pools)")
    p.add_argument("--show", type=int, default=3, help="caught rows shown per flag and pool")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample of caught rows shown")
    p.add_argument("--width", type=int, default=110, help="characters of each snippet")
    args = p.parse_args(argv)
    files = args.pools or (sorted(POOLS.glob("*.json*")) if POOLS.is_dir() else [])
    if not files:
        print(f"no pools: give --pools or put them in {POOLS}", file=sys.stderr)
        return 1
    print(f"rules: {json.dumps(degenerate.RULES)}")
    summary = {}
    for path in files:
        examples = load(path, lenient=True).examples
        start = time.perf_counter()
        found = degenerate.flags(examples, echoes="drop", empty="drop", refusals="drop")
        seconds = time.perf_counter() - start
        by_kind = {kind: [p for p, f in found.items() if f["kind"] == kind] for kind in degenerate.KINDS}
        short_to_long = [i for i, ex in enumerate(examples) if i not in found
                         and len(degenerate.words(ex.response)) <= 2 and len(ex.instruction.split()) >= 50]
        counts = {kind: len(rows) for kind, rows in by_kind.items()}
        recall = synthetic_echoes(examples)
        summary[path.name] = {"rows": len(examples), **counts, "short_reply_to_long_prompt_not_flagged":
                              len(short_to_long), "seconds": round(seconds, 2), "made_up_echoes_caught": recall}
        print(f"\n== {path.name}: {len(examples)} rows; " + ", ".join(f"{k} {n}" for k, n in counts.items())
              + f"; checked in {seconds:.2f} s")
        print("   made-up echoes of its instructions caught: " + ", ".join(f"{k} {v}" for k, v in recall.items()))
        rng = random.Random(args.seed)
        for kind, rows in [*by_kind.items(), ("not flagged: 1-2 word reply to a 50+ word prompt", short_to_long)]:
            if not rows:
                continue
            shown = sorted(rng.sample(rows, min(args.show, len(rows))))
            print(f"  -- {kind} ({len(rows)}), showing {len(shown)}:")
            for i in shown:
                ex = examples[i]
                print(f"     [{i}] instruction: {snippet(ex.instruction, args.width)}")
                print(f"          response:    {snippet(ex.response, args.width)}")
                if i in found:
                    print(f"          reason:      {found[i]['reason']}")
    print()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
