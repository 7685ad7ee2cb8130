"""`rank INPUT --out SELECTED.jsonl --ratio R`: score, rank, select and export the subset, best first."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from db.runs import VECTOR_DTYPE
from scar_core.cli.common import (add_clean_options, add_engine_options, add_input_options, add_model_options,
                                  clean_examples, command_engine, load_inputs, open_ranker, ray_cluster, score_text,
                                  score_with_progress)
from scar_core.errors import ScarError
from scar_core.export import (BundlePart, describe_input, describe_ranker, export, file_sha256, manifest,
                              matched_bundle)
from scar_core.labels import DEFAULT_POLICY, POLICIES, label_summary, read_labels, resolve as decide_labels
from scar_core.ranker import checkpoint_location
from scar_core.select import eligible_rows, rule_of
from scar_core.coverage import covered_cut
from scar_core.signals import (NOVELTY_NEIGHBOURS, SCAR, Blend, blend_record, check_name, combine, imported_values,
                               knn_novelty, length_settings, novelty_settings, parse_weights, response_tokens)


def add(sub) -> None:
    p = sub.add_parser("rank", help="score, rank, select and export the best pairs")
    add_input_options(p)
    add_model_options(p)
    p.add_argument("--out", required=True, help="output JSONL path (a .manifest.json is written beside it)")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--ratio", type=float, help="keep this fraction of the pool, e.g. 0.1")
    rule.add_argument("--topk", type=int, help="keep this many pairs")
    rule.add_argument("--threshold", type=float, help="keep pairs scoring at least this")
    p.add_argument("--format", default="alpaca", choices=["alpaca", "sharegpt", "messages", "prompt_completion"],
                   help="shape of the exported rows")
    add_engine_options(p)
    p.add_argument("--with-scores", action="store_true", help="add a 'score' field to each exported row")
    add_clean_options(p)
    p.add_argument("--keep-flagged", action="store_true",
                   help="rank flagged rows too (by default rows flagged for language, echoes of the prompt, empty "
                        "responses and, with --refusals drop, refusals are left out, and each duplicate cluster "
                        "keeps only its best-scored member)")
    p.add_argument("--labels", help="annotator labels (.jsonl/.csv/...: id, label keep|drop|flag, optionally "
                                    "annotator and adjudication true|false): the label policy decides one label "
                                    "per row; keep forces it in, drop forces it out, as on the Select page")
    p.add_argument("--label-policy", default=DEFAULT_POLICY, choices=list(POLICIES),
                   help="how several annotators' labels become one: " +
                        "; ".join(f"{name}: {rule}" for name, rule in POLICIES.items()))
    p.add_argument("--quota", action="append", default=[], metavar="SOURCE=N",
                   help="keep at most N rows of this source (repeat for several sources)")
    p.add_argument("--coverage", type=float, default=0.0, metavar="X",
                   help="0 (default): pure score; up to 1: spread the cut over k-means clusters of the responses' "
                        "v_lf embeddings (per-cluster quotas in proportion to cluster size)")
    p.add_argument("--baselines", action="store_true",
                   help="also write the random, longest and length-matched subsets of the same size beside the "
                        "output (OUT.random.jsonl, ...), listed with the evidence in the manifest")
    p.add_argument("--seed", type=int, default=0, help="seed of the clustering and the baselines")
    p.add_argument("--signal", action="append", default=[], choices=["length", "novelty"],
                   help="compute this signal beside the score for --weights (length: response tokens; novelty: "
                        "mean cosine distance to the 10 nearest responses); repeat for several")
    p.add_argument("--import-scores", action="append", default=[], metavar="FILE:NAME",
                   help="scores from another tool (id, score rows keyed by the ids `score` writes) as signal NAME")
    p.add_argument("--weights", metavar="RULE",
                   help="cut on a blend, e.g. 'scar=1, novelty=0.5': the weighted sum of each named value's "
                        "z-score (scar: the SCAR score; others: --signal or --import-scores names)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cluster = ray_cluster(args)  # refuse bad engine options before loading anything
    if not 0 <= args.coverage <= 1:
        raise ScarError(f"--coverage takes a number from 0 to 1, got {args.coverage}")
    results, examples = load_inputs(args)
    quotas = parse_quotas(args.quota)
    decided = decide_labels(read_labels(args.labels), args.label_policy) if args.labels else None
    report = clean_examples(args, examples)
    todo = report.rows("all" if args.keep_flagged else "candidates")  # rows a flag of their own leaves out are never scored
    ranker = open_ranker(args)
    scores = score_with_progress(args, ranker, [examples[i] for i in todo], cluster)
    score = np.full(len(examples), np.nan)
    score[todo] = scores.score
    sources = np.array([ex.source for ex in examples], dtype=object)
    per_row = None if decided is None else np.array([decided.decided.get(ex.id) for ex in examples], dtype=object)
    cleaning = dict(clusters=report.cluster_ids, left_out_by=report.left_out_by, keep_flagged=args.keep_flagged)
    vectors = np.zeros((len(examples), scores.v_lf.shape[1]), np.float32)
    vectors[todo] = scores.v_lf.astype(VECTOR_DTYPE)  # as the store keeps them: the app clusters the same numbers
    by = blended(args, ranker, examples, score, vectors, todo, report.left_out_by,
                 eligible_rows(score, **cleaning)[0]) if args.weights else None
    chosen, spread = covered_cut(score if by is None else by.values, *rule_of(args.ratio, args.topk, args.threshold),
                                 args.coverage, vectors=vectors, seed=args.seed, sources=sources, quotas=quotas,
                                 labels=per_row, **cleaning)
    chosen.label_policy = label_summary(decided)
    chosen.blend = None if by is None else by.settings
    kept = [examples[i] for i in chosen.kept]
    scored_by = command_engine(args, ranker, cluster).describe()
    info = manifest(kept, args.format, args.with_scores,
                    inputs=[describe_input(r.path, file_sha256(r.path), r.format, r.rows, len(r.examples),
                                           len(r.rejected)) for r in results],
                    ranker=describe_ranker(checkpoint_location(args.model)[1], ranker.encoder_name,
                                           ranker.weights_hash, ranker.identity),
                    device=scored_by["device"], precision=scored_by["precision"], engine=scored_by["engine"],
                    cleaning=report.summary(),
                    scope={"sample": False, "rows": len(examples), "of": len(examples)}, selection=chosen.params())
    if args.baselines:  # the cut and each baseline with its manifest, the cut's listing them all
        parts = matched_bundle(chosen, examples, score, info, args.out, vectors=vectors, sources=sources,
                               labels=per_row, seed=args.seed, clusters=spread.clusters if spread else None)
    else:
        parts = [BundlePart("cut", args.out, kept, score[chosen.kept].tolist() if args.with_scores else None, info)]
    written = [export(part.name, part.examples, args.format, part.scores, part.manifest) for part in parts][0]
    print(f"kept {len(kept)} of {chosen.eligible} pairs (lowest kept score {score_text(chosen.threshold)}); "
          f"wrote {written.path} and {written.manifest_path}", file=sys.stderr)
    return 0


def blended(args: argparse.Namespace, ranker, examples: list, score: np.ndarray, vectors: np.ndarray,
            todo: np.ndarray, left_out_by: np.ndarray, pool: np.ndarray) -> Blend:
    """The blend --weights asks for, of the score and the --signal / --import-scores values (per row),
    z-scored over the cut's eligible `pool`; novelty's neighbours are the scored rows no flag of their
    own leaves out (as the app computes it)."""
    columns, made = {SCAR: score}, {}
    for kind in dict.fromkeys(args.signal):
        values = np.full(len(examples), np.nan)
        if kind == "length":
            values[todo] = response_tokens(ranker.tokenizer, [examples[i].response for i in todo])
            made[kind] = {"kind": kind, "settings": length_settings(ranker.encoder_name)}
        else:
            reference = np.array([flag is None for flag in left_out_by[todo]])
            values[todo] = knn_novelty(vectors[todo], reference=reference)
            made[kind] = {"kind": kind, "settings": novelty_settings(NOVELTY_NEIGHBOURS, reference)}
        columns[kind] = values
    for item in args.import_scores:
        path, _, name = item.rpartition(":")
        if not path or not name:
            raise ScarError(f"--import-scores takes FILE:NAME, got {item!r}")
        check_name(name, list(columns))
        columns[name] = imported_values(path, [ex.id for ex in examples])
        made[name] = {"kind": "imported", "settings": {"file": Path(path).name, "rows": len(examples)}}
    weights = parse_weights(args.weights)
    return Blend(combine(columns, weights, pool=pool), blend_record(weights, made))


def parse_quotas(items: list[str]) -> dict[str, int] | None:
    """{source: most rows} from repeated SOURCE=N options."""
    quotas = {}
    for item in items:
        source, _, count = item.rpartition("=")
        if not source or not count.isdigit():
            raise ScarError(f"--quota takes SOURCE=N with N a whole number, got {item!r}")
        quotas[source] = int(count)
    return quotas or None
