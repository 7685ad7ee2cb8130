"""Options and steps shared by several commands."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from scar_core.clean import (DEDUP_MODES, DEFAULT_DEDUP, DEFAULT_ECHOES, DEFAULT_EMPTY, DEFAULT_LANG, DEFAULT_REFUSALS,
                             DEGENERATE_MODES, CleanReport, clean)
from scar_core.device import PRECISION_CHOICES
from scar_core.errors import ScarError, terminal_text
from scar_core.example import Example
from scar_core.jobs.ray import (ENGINES, RayCluster, check_reachable, default_address, ray_device_precision,
                                ray_score_examples)
from scar_core.load import LoadResult, load
from scar_core.ranker import StyleRanker, load_ranker
from scar_core.score import Scores, score_examples


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".json, .jsonl, .csv or .parquet file(s)")
    p.add_argument("--input-format", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="row shape of the input (detected from the first row when omitted)")
    p.add_argument("--lenient", action="store_true",
                   help="keep every valid row and report rejected rows instead of stopping at the first")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default' (bundled ranker) or a checkpoint folder")
    p.add_argument("--encoder", help="load the encoder from here instead of the checkpoint's (offline copy)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto: bf16 where the hardware supports it natively, else fp32")
    p.add_argument("--batch-size", type=int, help="most texts per encoder batch (default: 128 on CPU, 512 on GPU)")


def add_engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="local", choices=ENGINES,
                   help="local: score in this process; ray: on a Ray cluster (Ray Data actors, one ranker each)")
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
    if args.engine != "ray":
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
    return load_ranker(args.model, encoder=args.encoder)


def score_with_progress(args: argparse.Namespace, ranker: StyleRanker, examples: list[Example],
                        cluster: RayCluster | None) -> Scores:
    """Score examples with the command's device, precision and batch options on its engine (`cluster`,
    from ray_cluster, or None for this process), showing a progress bar."""
    bar, update = progress_bar(len(examples))
    with bar:
        if cluster is not None:
            precision = ray_device_precision(args.device, args.precision)[1]
            return ray_score_examples(ranker, args.model, examples, cluster=cluster, encoder=args.encoder,
                                      device=args.device, precision=precision, batch_size=args.batch_size,
                                      progress=update)
        return score_examples(ranker, examples, device=args.device, precision=args.precision,
                              batch_size=args.batch_size, progress=update)


def progress_bar(total: int, desc: str = "scoring"):
    """A tqdm bar on stderr and a callback for the scoring engine's progress."""
    bar = tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, disable=None)

    def update(done: int, _total: int, _rate: float) -> None:
        bar.update(done - bar.n)

    return bar, update
