"""Options and steps shared by several commands."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from scar_core.clean import DEDUP_MODES, DEFAULT_DEDUP, DEFAULT_LANG, CleanReport, clean
from scar_core.device import PRECISION_CHOICES
from scar_core.errors import terminal_text
from scar_core.example import Example
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


def add_clean_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dedup", default=DEFAULT_DEDUP, choices=DEDUP_MODES,
                   help="flag duplicates: near (MinHash near duplicates and exact copies, the default), "
                        "exact (copies up to whitespace and case) or none")
    p.add_argument("--lang", default=DEFAULT_LANG,
                   help="flag pairs not in these languages: en (default), comma-separated ISO 639-1 codes "
                        "such as en,de, or any (no check)")


def clean_examples(args: argparse.Namespace, examples: list[Example], scores=None) -> CleanReport:
    """Run the clean step with the command's --dedup/--lang and say what it flagged."""
    report = clean(examples, dedup=args.dedup, lang=args.lang, scores=scores)
    c = report.counts()
    print(f"cleaning: {c['flagged']} of {c['rows']} pairs flagged ({c['exact_duplicates']} exact duplicates, "
          f"{c['near_duplicates']} near duplicates, {c['language']} not in {args.lang})", file=sys.stderr)
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


def score_with_progress(args: argparse.Namespace, ranker: StyleRanker, examples: list[Example]) -> Scores:
    """Score examples with the command's device, precision and batch options, showing a progress bar."""
    bar, update = progress_bar(len(examples))
    with bar:
        return score_examples(ranker, examples, device=args.device, precision=args.precision,
                              batch_size=args.batch_size, progress=update)


def progress_bar(total: int, desc: str = "scoring"):
    """A tqdm bar on stderr and a callback for the scoring engine's progress."""
    bar = tqdm(total=total, desc=desc, unit="pair", file=sys.stderr, disable=None)

    def update(done: int, _total: int, _rate: float) -> None:
        bar.update(done - bar.n)

    return bar, update
