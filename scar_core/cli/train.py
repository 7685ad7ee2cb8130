"""`train DATA.jsonl [...] --out DIR`: train a SCAR ranker; the last stdout line is a JSON summary."""
from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from scar_core.cli.common import add_quiet_option, progress
from scar_core.device import PRECISION_CHOICES
from scar_core.export import file_sha256
from scar_core.train import TrainConfig, TrainProgress, start_ranker, train
from scar_core.training_data import QUALITY_MODES, read_training_rows


def add(sub) -> None:
    p = sub.add_parser("train", help="train a ranker on instruction / human / referenced / direct rows")
    p.add_argument("data", nargs="+", metavar="DATA", help="JSONL training rows (see scar_core/training_data.py)")
    p.add_argument("--out", required=True, help="folder for the best checkpoint")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--encoder", default="minilm",
                       help="encoder to start from, with a fresh head: minilm (bundled), a folder or hub id")
    start.add_argument("--init", metavar="MODEL",
                       help="start from a trained ranker instead (default or a checkpoint folder): its encoder and "
                            "head, e.g. to fine-tune the encoder after training the head, or to adapt the default")
    p.add_argument("--linear-dim", type=int, help="width of the head's hidden layers (default: the encoder's)")
    add_source_filters(p)
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per optimiser step")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    p.add_argument("--val-ratio", type=float, default=d.val_ratio, help="share of instructions held out for validation")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quality-mode", choices=QUALITY_MODES, default=d.quality_mode,
                   help="SCAR's quality constraint on pairs with scores")
    p.add_argument("--quality-min", type=float, default=d.quality_min)
    p.add_argument("--quality-max", type=float, default=d.quality_max)
    p.add_argument("--length-debias", action="store_true",
                   help="add training rows whose LLM answer is cut (at a sentence end) to shorter than the human "
                        "answer, so the ranker cannot learn 'longer wins'")
    p.add_argument("--lm-surprisal", nargs="?", const="smollm2", metavar="LM",
                   help="add an LM term to the score: the response's NLL given the instruction under a small causal "
                        "LM (default smollm2, bundled; or a hub id or folder), text copied from the prompt left "
                        "out; scoring then runs that LM too")
    p.add_argument("--lm-max-tokens", type=int, metavar="N",
                   help="the LM term's token limit per pair, prompt and response together (default 256); fewer "
                        "tokens score faster on a CPU")
    p.add_argument("--lm-lr", type=float, default=d.lm_lr, help="learning rate of the LM term's weight")
    p.add_argument("--predict-lm", action="store_true",
                   help="distil the LM term into the ranker: its head learns to predict the LM's NLL from the "
                        "encoder's outputs, so scoring runs no LM (training still measures every response once)")
    p.add_argument("--distil-weight", type=float, default=d.distil_weight,
                   help="with --predict-lm: weight of the NLL regression loss beside SCAR's ranking loss")
    p.add_argument("--nll-cache", metavar="FILE",
                   help="JSONL of the LM's measured NLLs: read before measuring (only new responses are "
                        "measured) and written after, so a second training step skips the LM")
    tune = p.add_mutually_exclusive_group()
    tune.add_argument("--freeze-encoder", action="store_true",
                      help="train only the head (encoder outputs are computed once and cached)")
    tune.add_argument("--adapters", choices=["lora"], help="train LoRA adapters on the encoder plus the head")
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--save-encoder", action="store_true",
                   help="store the encoder weights even when frozen (default: only when trained)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="precision of a frozen encoder's one-off pass (auto: as scoring, bf16 where native)")
    p.add_argument("--max-length", type=int, help="token limit per text while training the encoder "
                   "(default: the ranker's, 512; scoring keeps 512)")
    p.add_argument("--train-precision", default=d.train_precision, choices=["fp32", "bf16"],
                   help="autocast of the encoder's passes while training it (bf16: faster on CPUs with native bf16)")
    p.add_argument("--save-precision", default=d.save_precision, choices=["fp32", "fp16"],
                   help="storage type of the saved weights (fp16 halves the file; loading casts to fp32)")
    add_quiet_option(p)
    p.set_defaults(run=run)


def add_source_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", default=[], metavar="PATTERN",
                   help="keep only rows whose 'source' matches this glob, e.g. 'hc3/*' (repeatable)")
    p.add_argument("--exclude-source", action="append", default=[], metavar="PATTERN",
                   help="drop rows whose 'source' matches this glob (repeatable)")


def run(args: argparse.Namespace) -> int:
    rows = read_training_rows(args.data, args.source, args.exclude_source)
    print(f"{len(rows)} training rows from {len(args.data)} file(s)", file=sys.stderr)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, val_ratio=args.val_ratio,
                         seed=args.seed, quality_mode=args.quality_mode, quality_min=args.quality_min,
                         quality_max=args.quality_max, freeze_encoder=args.freeze_encoder, adapters=args.adapters,
                         lora_rank=args.lora_rank, save_encoder=True if args.save_encoder else None,
                         device=args.device, encode_precision=args.precision,
                         max_length=args.max_length, train_precision=args.train_precision,
                         save_precision=args.save_precision, length_debias=args.length_debias,
                         lm_lr=args.lm_lr, distil_weight=args.distil_weight, nll_cache=args.nll_cache)
    ranker = start_ranker(args.init, args.encoder, args.linear_dim, args.seed, args.lm_surprisal,
                          args.lm_max_tokens, args.predict_lm)
    metadata = {"init": args.init, "data": [{"path": str(p), "sha256": file_sha256(p)} for p in args.data],
                "sources": args.source, "exclude_sources": args.exclude_source, "rows": len(rows)}
    bars: dict = {}

    def show(p: TrainProgress) -> None:
        bar = bars.get(p.phase)
        if p.phase == "epoch":
            tqdm.write(f"epoch {p.epoch}/{p.epochs}: loss {p.loss}, validation pairwise accuracy {p.val_accuracy}",
                       file=sys.stderr)
            return
        if bar is None:
            desc, unit = {"lm": ("LM surprisal", "text"), "encode": ("encoding", "text")}.get(p.phase, ("training", "step"))
            bar = bars[p.phase] = progress(p.steps, desc, unit, args.quiet)
        bar.update(p.step - bar.n)
        if p.loss is not None:
            bar.set_postfix(epoch=p.epoch, loss=f"{p.loss:.4f}")

    try:
        result = train(ranker, rows, config, out=args.out, progress=show, metadata=metadata)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"best epoch {result.best_epoch} (validation pairwise accuracy {result.best_val_accuracy}); "
          f"saved to {result.out}", file=sys.stderr)
    print(json.dumps(result.summary()))
    return 0
