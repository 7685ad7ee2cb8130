"""Options and steps shared by several commands."""
from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from scar_core.clean import (DEDUP_MODES, DEFAULT_DEDUP, DEFAULT_ECHOES, DEFAULT_EMPTY, DEFAULT_LANG, DEFAULT_REFUSALS,
                             DEGENERATE_MODES, CleanReport, clean)
from scar_core.device import PRECISION_CHOICES
from scar_core.errors import ScarError, terminal_text
from scar_core.example import Example
from scar_core.engine import Engine
from scar_core.jobs.ray import (ENGINES, RayCluster, check_reachable, default_address, open_engine,
                                ray_device_precision, split_engine)
from scar_core.load import LoadResult, load
from scar_core.ranker import StyleRanker, load_ranker
from scar_core.score import Scores

PROGRESS_EVERY_S = 10.0  # a progress line this often when stderr is not a terminal
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit}s, {rate_fmt}, {elapsed} elapsed, about {remaining} left"


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".json, .jsonl, .csv or .parquet file(s)")
    p.add_argument("--input-format", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="row shape of the input (detected from the first row when omitted)")
    p.add_argument("--lenient", action="store_true",
                   help="keep every valid row and report rejected rows instead of stopping at the first")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (bundled ranker) or a checkpoint folder")
    p.add_argument("--encoder", help="load the encoder from here instead of the checkpoint's (offline copy)")
    p.add_argument("--device", default="auto",
                   help="auto (a CUDA GPU, else an Apple GPU, else the CPU), cpu, cuda or mps")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto: bf16 where the hardware supports it natively, else fp32")
    p.add_argument("--batch-size", type=int, help="most texts per encoder batch (default: 128 on CPU, 512 on GPU)")
    add_quiet_option(p)


def add_quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (by default a bar on a terminal, elsewhere a line every "
                        f"{PROGRESS_EVERY_S:.0f} s with the rate, done/total and the time left)")


def quiet_loading(args: argparse.Namespace) -> None:
    """With --quiet, also silence the model-loading bars of transformers."""
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="auto: the fastest engine that keeps the scores (models/default/README.md, 'Engines'); "
                        "torch: the ranker in torch (CPU, CUDA, MPS); int8: the LM term in int8 through CTranslate2 "
                        "(CPU); ray, ray:torch, ray:int8: that engine in Ray Data actors on a cluster, one ranker "
                        "each (ray runs torch); local: the older name of auto")
    p.add_argument("--address", default=default_address(),
                   help="with --engine ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001; default "
                        "$SCAR_RAY_ADDRESS); without one a local Ray instance is started")
    p.add_argument("--workers", type=int,
                   help="with --engine ray: actors, each holding one ranker (default: one per GPU, else one per CPU)")
    p.add_argument("--block-rows", type=int,
                   help="with --engine ray: rows per block and per actor call (default: 64 on CPU, 2048 on GPU)")


def ray_cluster(args: argparse.Namespace) -> RayCluster | None:
    """The command's Ray engine settings, or None for the local engine; bad values and a cluster address
    that does not answer are refused here, before any work."""
    if not split_engine(args.engine)[0]:
        if args.workers is not None or args.block_rows is not None:
            raise ScarError("--workers and --block-rows apply only with --engine ray")
        return None
    for name in ("workers", "block_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ScarError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    ray_device_precision(args.device, args.precision)
    if args.address and args.address != "auto":
        check_reachable(args.address)
    return RayCluster(args.address, args.workers, args.block_rows)


def add_clean_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dedup", default=DEFAULT_DEDUP, choices=DEDUP_MODES,
                   help="flag duplicates: near (MinHash near duplicates and exact copies, the default), "
                        "exact (copies up to whitespace and case) or none")
    p.add_argument("--lang", default=DEFAULT_LANG,
                   help="flag pairs not in these languages: en (default), comma-separated ISO 639-1 codes "
                        "such as en,de, or any (no check)")
    p.add_argument("--echoes", default=DEFAULT_ECHOES, choices=DEGENERATE_MODES,
                   help="responses that only repeat the instruction (almost no words of their own): drop (flag "
                        "and leave out of the cut, the default), keep (flag only) or none (no check)")
    p.add_argument("--empty", default=DEFAULT_EMPTY, choices=DEGENERATE_MODES,
                   help="responses with no letters, digits or symbols (whitespace, punctuation, invisible "
                        "characters): drop (the default), keep or none")
    p.add_argument("--refusals", default=DEFAULT_REFUSALS, choices=DEGENERATE_MODES,
                   help="short responses that decline the task (\"I'm sorry, but I can't ...\", \"As an AI "
                        "language model, I cannot ...\"): keep (flag, still ranked: the default), drop or none")


def clean_examples(args: argparse.Namespace, examples: list[Example], scores=None) -> CleanReport:
    """Run the clean step with the command's --dedup/--lang/--echoes/--empty/--refusals and say what it flagged."""
    modes = {name: getattr(args, name, default) for name, default in
             (("echoes", DEFAULT_ECHOES), ("empty", DEFAULT_EMPTY), ("refusals", DEFAULT_REFUSALS))}
    report = clean(examples, dedup=args.dedup, lang=args.lang, scores=scores, **modes)
    c = report.counts()
    print(f"cleaning: {c['flagged']} of {c['rows']} pairs flagged ({c['exact_duplicates']} exact duplicates, "
          f"{c['near_duplicates']} near duplicates, {c['language']} not in {args.lang}, {c['echoes']} echoes of "
          f"the prompt, {c['empty']} empty, {c['refusals']} refusals{' kept' if modes['refusals'] == 'keep' else ''})",
          file=sys.stderr)
    return report


def load_inputs(args: argparse.Namespace) -> tuple[list[LoadResult], list[Example]]:
    results = [load(path, fmt=args.input_format, lenient=args.lenient) for path in args.inputs]
    for r in results:
        print(f"{terminal_text(r.path)}: {r.format}, {r.rows} rows, {len(r.examples)} pairs, {len(r.rejected)} rejected",
              file=sys.stderr)
        for rej in r.rejected[:20]:
            print(f"  rejected: {terminal_text(rej.message(r.path))}", file=sys.stderr)
        if len(r.rejected) > 20:
            print(f"  ... and {len(r.rejected) - 20} more rejected rows", file=sys.stderr)
    return results, [ex for r in results for ex in r.examples]


def open_ranker(args: argparse.Namespace) -> StyleRanker:
    quiet_loading(args)
    return load_ranker(args.model, encoder=args.encoder)


def command_engine(args: argparse.Namespace, ranker: StyleRanker, cluster: RayCluster | None = None) -> Engine:
    """The engine a command scores with (scar_core.jobs.ray.open_engine): its --engine, --device,
    --precision and --batch-size, and the Ray cluster from ray_cluster for the ray engines."""
    return open_engine(ranker, args.model, getattr(args, "engine", "auto"), cluster=cluster, encoder=args.encoder,
                       device=args.device, precision=args.precision, batch_size=args.batch_size)


def score_with_progress(args: argparse.Namespace, ranker: StyleRanker, examples: list[Example],
                        cluster: RayCluster | None) -> Scores:
    """Score examples with the command's engine (command_engine; `cluster` from ray_cluster, or None for
    this process), showing a progress bar."""
    bar, update = progress_bar(len(examples), quiet=getattr(args, "quiet", False))
    with bar:
        return command_engine(args, ranker, cluster).score_examples(examples, progress=update)


def score_text(value: float | None) -> str:
    """A score as messages print it: 4 decimals (files keep every digit)."""
    return "none" if value is None else f"{value:.4f}"


def progress_bar(total: int, desc: str = "scoring", quiet: bool = False):
    """A progress display on stderr (see `progress`) and a callback for the scoring engine's progress."""
    bar = progress(total, desc, "pair", quiet)

    def update(done: int, _total: int, _rate: float) -> None:
        bar.update(done - bar.n)

    return bar, update


def progress(total: int, desc: str, unit: str, quiet: bool = False):
    """tqdm's bar when stderr is a terminal; elsewhere (a log file, a pipe) a ProgressLine every
    PROGRESS_EVERY_S seconds; nothing at all with --quiet."""
    if quiet:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    return ProgressLine(total, desc, unit)


class ProgressLine:
    """Progress as plain lines for stderr that is not a terminal, where tqdm's bar would hide itself:
    done/total, rate and time left, every `every` seconds and once at the end. Takes tqdm's calls."""

    def __init__(self, total: int, desc: str, unit: str, every: float = PROGRESS_EVERY_S):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.n, self.postfix = 0, ""
        self.started = self.said = time.monotonic()
        self.said_n = -1

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self.said >= self.every or (self.total and self.n >= self.total):
            self.say(now)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def say(self, now: float) -> None:
        if self.n == self.said_n:
            return
        line = tqdm.format_meter(self.n, self.total or None, now - self.started, prefix=self.desc, unit=self.unit,
                                 bar_format=LINE_FORMAT if self.total else "{desc}: {n_fmt} {unit}s, {rate_fmt}")
        print(line + (f" ({self.postfix})" if self.postfix else ""), file=sys.stderr, flush=True)
        self.said, self.said_n = now, self.n

    def close(self) -> None:
        self.say(time.monotonic())

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
