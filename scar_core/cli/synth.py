"""`synth HUMAN_PAIRS --out TRAIN.jsonl --backend local|openai`: make ranker training rows from human
pairs (referenced and direct LLM responses, judged for quality). The last stdout line is a JSON summary."""
from __future__ import annotations

import argparse
import json
import os
import sys


from scar_core.cli.common import add_quiet_option, load_inputs, progress
from scar_core.errors import ScarError, terminal_text
from scar_core.synth import prompts
from scar_core.synth.pipeline import SynthProgress, synthesize


def add(sub) -> None:
    p = sub.add_parser("synth", help="generate and judge LLM responses to human pairs, for `train`")
    p.add_argument("inputs", nargs="*", metavar="HUMAN_PAIRS", help="human (instruction, response) pairs: "
                   ".json, .jsonl, .csv or .parquet in any format `score` reads")
    p.add_argument("--input-format", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="row shape of the input (detected from the first row when omitted)")
    p.add_argument("--lenient", action="store_true", help="skip and report bad rows instead of stopping")
    p.add_argument("--out", help="training rows (JSONL) to write")
    p.add_argument("--limit", type=int, help="use only the first N pairs")
    p.add_argument("--backend", choices=["local", "openai"], default="local",
                   help="local: a Hugging Face model in this process (default: the bundled SmolLM2); "
                        "openai: any OpenAI-compatible server")
    p.add_argument("--model", help="openai: the model name the server knows; local: a .gguf file or model folder")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                   help="openai: server URL up to /v1, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="openai: environment variable holding the API key (none sent when it is unset)")
    p.add_argument("--concurrency", type=int, default=4, help="openai: requests in flight")
    p.add_argument("--rate-limit", type=float, help="openai: at most this many requests per second")
    p.add_argument("--max-retries", type=int, default=6, help="openai: tries after a failed request")
    p.add_argument("--batch-size", type=int, default=8, help="local: prompts per generation batch")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32", help="local: weights precision")
    p.add_argument("--max-tokens", type=int, default=512, help="longest generated response, in tokens")
    p.add_argument("--judge-max-tokens", type=int, default=64, help="longest judge reply, in tokens")
    p.add_argument("--no-judge", action="store_true", help="skip quality judging (rows get no scores)")
    p.add_argument("--cache", help="call cache (SQLite; default OUT.cache.sqlite): rerun to resume")
    p.add_argument("--show-prompts", action="store_true", help="print the prompts the LLM is sent and exit")
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.show_prompts:
        print(prompts.describe(), end="")
        return 0
    if not args.inputs or not args.out:
        raise ScarError("synth needs HUMAN_PAIRS and --out (or --show-prompts)")
    _, examples = load_inputs(args)
    if args.limit is not None:
        examples = examples[:args.limit]
    if not examples:
        raise ScarError("no human pairs to work on")
    backend = open_backend(args)
    bars: dict = {}

    def show(p: SynthProgress) -> None:
        bar = bars.get(p.phase)
        if bar is None:
            desc = "generating" if p.phase == "generate" else "judging"
            bar = bars[p.phase] = progress(p.total, desc, "call", args.quiet)
        bar.update(p.done - bar.n)
        bar.set_postfix(cached=p.cached)

    try:
        summary = synthesize(examples, backend, args.out, judge=not args.no_judge, progress=show,
                             cache_path=args.cache, max_tokens=args.max_tokens,
                             judge_max_tokens=args.judge_max_tokens)
    finally:
        for bar in bars.values():
            bar.close()
        backend.close()
    print(f"wrote {summary.pairs} rows to {summary.out}: {summary.new_calls} new calls, "
          f"{summary.cached_calls} from the cache, {summary.empty_responses} empty responses", file=sys.stderr)
    if not args.no_judge:
        print(f"judge: {summary.judge_replies} replies, {summary.judge_unparseable} unreadable "
              f"(scores recorded as missing), {summary.judge_partial} with one score missing", file=sys.stderr)
        for reply in summary.unparseable_examples:
            print(f"  unreadable judge reply: {terminal_text(reply)!r}", file=sys.stderr)
    print(json.dumps(summary.to_dict()))
    return 0


def open_backend(args: argparse.Namespace):
    if args.backend == "openai":
        from scar_core.synth.openai_backend import OpenAIBackend

        if not args.base_url or not args.model:
            raise ScarError("--backend openai needs --base-url (or $OPENAI_BASE_URL) and --model")
        return OpenAIBackend(args.base_url, args.model, api_key_env=args.api_key_env, concurrency=args.concurrency,
                             rate_limit=args.rate_limit, max_retries=args.max_retries)
    from scar_core.synth.local_backend import LocalBackend

    return LocalBackend(args.model, batch_size=args.batch_size, precision=args.precision)
