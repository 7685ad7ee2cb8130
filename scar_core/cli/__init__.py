"""`python -m scar_core COMMAND ...`: one module per command, each with `add(subparsers)` and `run(args)`."""
from __future__ import annotations

import argparse
import os
import sys

from scar_core.cli import compare, diagnose, eval, jobs, rank, score, serve, synth, train, validate, worker
from scar_core.errors import ScarError, terminal_text

COMMANDS = [score, rank, synth, train, eval, diagnose, compare, validate, jobs, worker, serve]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scar_core",
                                     description="Rank instruction-tuning data by response style consistency (SCAR).")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add(sub)
    args, unknown = parser.parse_known_args(argv)  # only `serve` takes options of its own (Streamlit's)
    if unknown and args.command != "serve":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.options = unknown
    try:
        return args.run(args) or 0
    except ScarError as e:
        print(f"error: {terminal_text(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: one paragraph, no traceback unless asked for
        if os.environ.get("SCAR_DEBUG"):
            raise
        print(f"error: unexpected {type(e).__name__}: {terminal_text(str(e))}. This is a bug in SCAR Studio; "
              "run again with SCAR_DEBUG=1 to see the traceback.", file=sys.stderr)
        return 1
