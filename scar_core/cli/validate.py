"""`validate SELECTED.jsonl.manifest.json`: does the cut train a better model than matched baselines?

LoRA-fine-tunes one small LM on the cut and on each baseline with the same budget, evaluates every tuned
model and the untuned one on held-out prompts, prints the table and writes it as JSON beside the
manifest (SELECTED.jsonl.validate.json). With an OpenAI-compatible endpoint (--base-url or $OPENAI_BASE_URL,
and --judge-model, as `synth` takes them) a judge compares each subset's answers with random's, position
swapped. See scar_core/validate.py."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from scar_core import validate
from scar_core.device import PRECISION_CHOICES, resolve
from scar_core.errors import ScarError
from scar_core.export import write_atomic
from scar_core.synth.cache import CallCache


def add(sub) -> None:
    p = sub.add_parser("validate", help="fine-tune a small LM on the cut and on matched baselines; compare on "
                                        "held-out prompts")
    p.add_argument("manifest", metavar="MANIFEST", help="the SELECTED.jsonl.manifest.json `rank` wrote")
    p.add_argument("--tune-model", default=validate.DEFAULT_MODEL,
                   help="the model to fine-tune: 'default' (the bundled SmolLM2-135M-Instruct, offline), a "
                        "Hugging Face causal LM id or a local folder")
    p.add_argument("--eval", dest="eval_path", metavar="PROMPTS",
                   help="held-out prompts with reference answers (.json/.jsonl/.csv/.parquet in any shape the "
                        "project reads); default: a held-out split of the pool that no subset was drawn from")
    p.add_argument("--eval-format", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="row shape of --eval (detected from the first row when omitted)")
    p.add_argument("--eval-rows", type=int,
                   help=f"evaluate on a seeded sample of this many rows (default: all of --eval, or "
                        f"{validate.DEFAULT_EVAL_ROWS} held-out pool rows)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps for the cut")
    budget.add_argument("--epochs", type=float, help="passes over the cut (default 1)")
    p.add_argument("--budget", default="tokens", choices=validate.BUDGETS,
                   help="tokens: every baseline trains on as many answer tokens as the cut (default); "
                        "steps: every subset trains the cut's number of steps")
    p.add_argument("--batch-size", type=int, default=8, help="rows per optimizer step (default 8)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate, constant (default 2e-4)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank (alpha = 2r; default 8)")
    p.add_argument("--max-tokens", type=int, default=512,
                   help="tokens per pair in training and evaluation; the prompt keeps at most half (default 512)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto: bf16 where the hardware computes it natively, else fp32")
    p.add_argument("--seed", type=int, default=0, help="seed for LoRA's initial weights, row order, samples")
    p.add_argument("--ratios", type=float, nargs="+", metavar="R",
                   help="also a curve of eval NLL against the share of the pool kept (e.g. 0.05 0.1 0.25 0.5 1.0), "
                        "for the cut and random; needs --scores")
    p.add_argument("--scores", help="the pool's scores (what `python -m scar_core score` writes), for --ratios")
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL"),
                   help="the judge: an OpenAI-compatible server URL up to /v1, e.g. http://127.0.0.1:8000/v1 "
                        "(default: $OPENAI_BASE_URL); without it (or --judge-model) no win rate is measured")
    p.add_argument("--judge-model", help="the judge: the model name the server knows")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="the judge: environment variable holding the API key (none sent when it is unset)")
    p.add_argument("--concurrency", type=int, default=4, help="the judge: requests in flight")
    p.add_argument("--judge-rows", type=int, default=validate.DEFAULT_JUDGE_ROWS,
                   help=f"eval prompts each tuned model answers for the judge, a seeded sample (default "
                        f"{validate.DEFAULT_JUDGE_ROWS})")
    p.add_argument("--gen-tokens", type=int, default=256,
                   help="longest answer a tuned model writes for the judge (greedy decoding; default 256)")
    p.add_argument("--out", help="where to write the JSON (default: beside the manifest, SELECTED.jsonl.validate.json)")
    p.add_argument("--judge-cache", help="the judge's call cache (SQLite; default OUT.judge-cache.sqlite): a run "
                                         "that stopped part way asks again only what is missing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = validate.Settings(steps=args.steps, epochs=args.epochs, budget=args.budget, batch_size=args.batch_size,
                                 learning_rate=args.lr, lora_r=args.lora_r, max_tokens=args.max_tokens, seed=args.seed,
                                 device=args.device, precision=args.precision, gen_tokens=args.gen_tokens,
                                 judge_rows=args.judge_rows)
    settings.check()
    if args.ratios and not args.scores:
        raise ScarError("--ratios needs --scores (the pool's scores, as `python -m scar_core score` writes them): "
                        "the selection holds only the kept rows")
    for r in args.ratios or []:
        if not 0 < r <= 1:
            raise ScarError(f"--ratios takes shares in (0, 1], got {r}")
    if args.eval_rows is not None and args.eval_rows < 1:
        raise ScarError(f"--eval-rows must be at least 1, got {args.eval_rows}")
    resolve(args.device, args.precision)  # refuse an unusable device before reading anything
    out = Path(args.out) if args.out else validate.selection_path(Path(args.manifest)).with_name(
        validate.selection_path(Path(args.manifest)).name + ".validate.json")
    judge = open_judge(args, Path(args.judge_cache or f"{out}.judge-cache.sqlite"))
    scores = validate.read_scores(args.scores) if args.scores else None
    study = validate.prepare(args.manifest, eval_path=args.eval_path, eval_format=args.eval_format,
                             eval_rows=args.eval_rows, seed=args.seed, need_pool=bool(args.ratios))
    for note in study.notes:
        validate.say(f"validate: {note}")
    base = validate.load_base(args.tune_model)
    try:
        report = validate.run(study, base, settings, ratios=args.ratios, scores=scores, judge=judge)
    finally:
        if judge:
            judge.close()
    print(validate.table(report))
    write_atomic(out, [json.dumps(report, indent=2, default=str) + "\n"])
    validate.say(f"wrote {out}")
    return 0


def open_judge(args: argparse.Namespace, cache: Path) -> validate.Judge | None:
    """The judge's client, with its call cache at `cache`, when an endpoint and a model are named; None (no
    win rate) when neither is."""
    if args.judge_model and not args.base_url:
        raise ScarError("--judge-model needs --base-url (or $OPENAI_BASE_URL): the judge's server")
    if not args.judge_model:
        return None
    from scar_core.synth.openai_backend import OpenAIBackend

    client = OpenAIBackend(args.base_url, args.judge_model, api_key_env=args.api_key_env,
                           concurrency=args.concurrency)
    return validate.Judge(client, base_url=args.base_url, cache=CallCache(cache))
