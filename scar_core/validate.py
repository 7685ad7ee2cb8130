"""Does the cut train a better model? Fine-tune one small LM on the cut and on matched baselines, compare.

SCAR's claim is about the model trained on the subset, so this is the experiment itself at a size a
user can afford. For the cut a `rank` manifest describes (the JSONL it sits beside) and each baseline
of the same size, the same base model gets a LoRA adapter (PEFT `LoraConfig`) trained by TRL's
`SFTTrainer` with the same seed, learning rate, batch size, token limit and budget; every tuned model
and the untuned one are then scored on held-out prompts: the mean negative log-likelihood per token of
the reference answers given the prompt (token-weighted over the whole set; chat template; only answer
tokens count; measured by scar_core.lm, the same code as the ranker's LM term). Lower is better.

- **Subsets.** The cut is checked against the manifest (sha256 of its ids, in order). Baselines come
  from the manifest's "baselines" list when it has one (each file's sha256 checked), else they are
  built here from the pool the manifest names under "inputs" (each file's sha256 checked): "random"
  (a seeded draw of as many rows as the cut) and "longest" (the rows with the longest responses, in
  words; ties in pool order), both from the rows cleaning would let a cut take (the manifest's
  cleaning options) and never from the held-out rows.
- **Budget.** The cut trains `steps` optimizer steps of `batch_size` rows (or `epochs` passes). Each
  subset's rows are fed in a seeded order, reshuffled every pass. With budget "tokens" (the default)
  every other subset trains until it has trained on as many answer tokens as the cut did (at the end of
  the batch that reaches it), so a subset of long answers is not given more compute; with "steps" every
  subset trains the cut's number of steps. The learning rate is constant, so no schedule depends on
  the number of steps.
- **Held-out set.** The user's file (any format scar_core.load reads), or else a seeded sample of pool
  rows that no subset was drawn from: not in any subset and in no duplicate cluster with a row of one.
  Either way an eval row whose content id (Example.id) is in a subset is dropped and counted.
- **Comparison.** Per subset: rows, steps, answer tokens trained on, training seconds, eval NLL and its
  perplexity, and against the cut the difference in eval NLL with a 95% paired bootstrap interval over
  the eval prompts (positive: the subset's model predicts the references worse than the cut's).
- **Judge.** With an OpenAI-compatible chat-completions endpoint (the synth back end,
  scar_core.synth.openai_backend), every tuned model answers a seeded sample of the eval prompts
  (greedy, a token cap) and the judge compares each subset's answer with the random subset's, each pair
  in both orders: a prompt counts 1 when the subset wins in both, 0 when it loses in both, 1/2 otherwise
  (tie, inconsistent, unreadable). The win rate is the mean, with a 95% percentile bootstrap interval
  over prompts. A judge that fails after tuning leaves the NLL results standing and says why.

The optional curve (`ratios` with the pool's scores) re-cuts the pool without the held-out rows at
each share kept with scar_core.select, the same rule as `rank`, and trains the cut and a random subset
of its size at each (with a judge, the cut's win rate against that random subset too); the app's
background job (scar_core.jobs.validation) draws the same curve from a scoring run.

Everything is deterministic for a seed on one machine and device: LoRA's initial weights are seeded,
dropout is off, and rows are fed in a fixed order (a sequential sampler over the planned order).
"""
from __future__ import annotations

import copy
import inspect
import json
import math
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scar_core.clean import clean
from scar_core.device import precision_name, resolve
from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.export import file_sha256, ids_sha256, response_words, to_jsonl_lines
from scar_core.lm import LanguageModel, end_of_turn, load_language_model, measure_surprisal
from scar_core.load import load
from scar_core.select import eligible_rows, select
from scar_core.synth.cache import CallCache, ask
from scar_core.synth.client import BackendError, Client

DEFAULT_MODEL = "default"
BUDGETS = ("tokens", "steps")
OWN_BASELINES = ("random", "longest")
DEFAULT_EVAL_ROWS = 200
DEFAULT_JUDGE_ROWS = 100
GEN_BATCH = 32  # prompts per generation batch on a GPU
BOOTSTRAP = 1000
Log = Callable[[str], None]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- settings and subsets


@dataclass
class Settings:
    """How every subset is tuned and evaluated (one set for all, recorded in the report)."""

    steps: int | None = None      # the cut's optimizer steps; None: from epochs
    epochs: float | None = None   # passes over the cut (default 1 when steps is None)
    budget: str = "tokens"        # "tokens": baselines train on as many answer tokens as the cut; "steps"
    batch_size: int = 8           # rows per optimizer step
    learning_rate: float = 2e-4
    lora_r: int = 8
    lora_alpha: int | None = None  # default 2 * r
    max_tokens: int = 512         # a pair is cut to this many tokens (prompt at most half), in training and eval
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    gen_tokens: int = 256         # the judge's answers: greedy decoding, at most this many new tokens
    judge_rows: int | None = DEFAULT_JUDGE_ROWS  # eval prompts the judge sees (a seeded sample); None: all

    def check(self) -> None:
        if self.budget not in BUDGETS:
            raise ScarError(f"--budget must be one of {', '.join(BUDGETS)}, not {self.budget!r}")
        if self.steps is not None and self.epochs is not None:
            raise ScarError("give --steps or --epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise ScarError(f"--steps must be at least 1, got {self.steps}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ScarError(f"--epochs must be a positive number, got {self.epochs}")
        for name in ("batch_size", "lora_r"):
            if getattr(self, name) < 1:
                raise ScarError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.gen_tokens < 1:
            raise ScarError(f"--gen-tokens must be at least 1, got {self.gen_tokens}")
        if self.judge_rows is not None and self.judge_rows < 1:
            raise ScarError(f"--judge-rows must be at least 1, got {self.judge_rows}")
        if self.max_tokens < 8:
            raise ScarError(f"--max-tokens must be at least 8, got {self.max_tokens}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ScarError(f"--lr must be a positive number, got {self.learning_rate}")

    @property
    def alpha(self) -> int:
        return self.lora_alpha or 2 * self.lora_r

    def steps_for(self, rows: int) -> int:
        """The cut's optimizer steps: `steps`, else ceil(epochs * rows / batch_size)."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil((self.epochs if self.epochs is not None else 1.0) * rows / self.batch_size))


@dataclass
class Subset:
    """Rows one model is tuned on."""

    name: str                    # "cut", "random", "longest", ... ("cut@0.1" on the curve)
    examples: list[Example]
    origin: str                  # where it came from, in words
    path: str | None = None
    sha256: str | None = None

    def describe(self) -> dict:
        return {"subset": self.name, "rows": len(self.examples), "origin": self.origin, "path": self.path,
                "sha256": self.sha256}


@dataclass
class Study:
    """Everything validate needs, read and checked before any model is loaded."""

    manifest_path: Path
    manifest: dict
    cut: Subset
    baselines: list[Subset]
    baselines_from: str           # "manifest" or "built here"
    eval_examples: list[Example]
    eval_info: dict
    pool: list[Example] | None = None
    pool_report: object | None = None  # scar_core.clean.CleanReport over `pool`
    held_out: np.ndarray | None = None  # pool positions held out for evaluation
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading the manifest


def read_manifest(path: str | Path) -> dict:
    """The manifest `rank` wrote beside a selection; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ScarError(f"{path}: no such file (give the .manifest.json that `rank` wrote beside the selection)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScarError(f"{path}: not a JSON manifest ({e})") from None
    if not isinstance(info, dict) or "selected_ids_sha256" not in info or "format" not in info:
        raise ScarError(f"{path}: not a selection manifest (it has no 'selected_ids_sha256' and 'format'); give "
                        "the SELECTED.jsonl.manifest.json that `python -m scar_core rank` wrote")
    return info


def selection_path(manifest_path: Path) -> Path:
    """The JSONL a manifest sits beside: its name without '.manifest.json'."""
    name = manifest_path.name
    if not name.endswith(".manifest.json"):
        raise ScarError(f"{manifest_path}: a selection manifest is named <selection>.manifest.json")
    return manifest_path.with_name(name[: -len(".manifest.json")])


def find_file(recorded: str, folder: Path, what: str) -> Path:
    """A file a manifest names: as recorded (absolute or from here), else beside the manifest by name."""
    candidates = [Path(recorded)]
    if not Path(recorded).is_absolute():
        candidates.append(folder / recorded)
    candidates.append(folder / Path(recorded).name)
    for c in candidates:
        if c.is_file():
            return c
    raise ScarError(f"{what} {recorded} named in the manifest was not found (looked as given and in {folder}); "
                    "it moved or was deleted: put it back, or re-run `rank`")


def checked_file(recorded: str, sha256: str | None, folder: Path, what: str) -> Path:
    path = find_file(recorded, folder, what)
    if sha256:
        actual = file_sha256(path)
        if actual != sha256:
            raise ScarError(f"{what} {path} changed since the manifest was written: its sha256 is {actual[:12]}..., "
                            f"the manifest records {sha256[:12]}...; the comparison would not be of the rows the "
                            "manifest describes. Restore the file or re-run `rank`")
    return path


def exported_pairs(path: Path, fmt: str) -> list[Example]:
    """The pairs an export wrote, one per row, as they were before export: a conversation row's last
    pair (with its earlier turns as context); an Alpaca row's `history` and `system` restored."""
    result = load(path, fmt=fmt)
    by_row: dict[str, Example] = {}
    for ex in result.examples:
        by_row[ex.meta.get("where", str(len(by_row)))] = ex  # later pairs of a row replace earlier ones
    pairs = list(by_row.values())
    if fmt == "alpaca":
        rebuilt = []
        for ex in pairs:
            history, system = ex.meta.get("history"), ex.meta.get("system")
            if history or system:
                context = [{"role": role, "content": text} for turn in history or []
                           for role, text in zip(("user", "assistant"), turn)]
                ex = Example(ex.instruction, ex.response, context=context, system=system or None,
                             source=ex.source, meta=ex.meta)
            rebuilt.append(ex)
        pairs = rebuilt
    return pairs


def _export_key(ex: Example, fmt: str) -> str:
    row = json.loads(next(iter(to_jsonl_lines([ex], fmt))))
    row.pop("score", None)
    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def read_pool(manifest: dict, folder: Path) -> list[Example]:
    """The pool the cut was made from: every file under the manifest's "inputs", sha256 checked."""
    inputs = manifest.get("inputs") or []
    if not inputs:
        raise ScarError("the manifest lists no input files, so the pool cannot be read")
    pool: list[Example] = []
    for item in inputs:
        path = checked_file(item.get("path") or item.get("name"), item.get("sha256"), folder, "pool file")
        pool.extend(load(path, fmt=item.get("format"), lenient=bool(item.get("rejected"))).examples)
    return pool


def read_cut(manifest_path: Path, manifest: dict, pool: list[Example] | None) -> Subset:
    """The selection beside the manifest, checked against the manifest's sha256 of its ids."""
    path = selection_path(manifest_path)
    if not path.is_file():
        raise ScarError(f"the selection {path} beside the manifest is missing: it moved or was deleted; "
                        "validate reads the JSONL the manifest sits beside")
    fmt = manifest["format"]
    try:
        pairs = exported_pairs(path, fmt)
    except ScarError as e:
        raise ScarError(f"the selection {path} no longer reads as the manifest's {fmt} rows: {e}") from None
    want = manifest["selected_ids_sha256"]
    pairs = _with_ids(pairs, want, path, fmt, pool)
    if ids_sha256([e.id for e in pairs]) != want:
        raise ScarError(f"the selection {path} changed since its manifest was written: the sha256 of its rows' "
                        f"ids is not the manifest's ({want[:12]}...); rows were edited, added, removed or "
                        "reordered. Restore the file or re-run `rank`")
    if len(pairs) != manifest.get("rows", len(pairs)):
        raise ScarError(f"the selection {path} holds {len(pairs)} rows, its manifest {manifest.get('rows')}")
    return Subset("cut", pairs, "the SCAR cut (the selection beside the manifest)", str(path),
                  file_sha256(path))


def _with_ids(pairs: list[Example], want: str, path: Path, fmt: str, pool: list[Example] | None) -> list[Example]:
    """`pairs` if their ids hash to `want`; else, when the pool is at hand, the pool's rows that export to
    the file's rows (an export that flattens earlier turns into the prompt, prompt_completion, loses
    the ids); else `pairs` (the caller refuses them)."""
    if ids_sha256([e.id for e in pairs]) == want or pool is None:
        return pairs
    by_key: dict[str, Example] = {}
    for ex in pool:
        by_key.setdefault(_export_key(ex, fmt), ex)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    matched = [by_key.get(json.dumps({k: v for k, v in r.items() if k != "score"}, sort_keys=True,
                                     ensure_ascii=False)) if isinstance(r, dict) else None for r in rows]
    return matched if all(m is not None for m in matched) else pairs


def manifest_baselines(manifest: dict, folder: Path, pool: list[Example] | None = None) -> list[Subset] | None:
    """The baselines the manifest lists under "baselines" (a list of {kind, path, sha256, rows, ...}
    or {kind: {...}}), each file's sha256 checked; None when it lists none."""
    listed = manifest.get("baselines")
    if not listed:
        return None
    if isinstance(listed, dict):
        listed = [{"kind": kind, **info} for kind, info in listed.items()]
    out = []
    for item in listed:
        if not isinstance(item, dict) or not item.get("path"):
            raise ScarError(f"the manifest's baselines entry {item!r} names no file ('path')")
        kind = str(item.get("kind") or Path(item["path"]).stem)
        path = checked_file(item["path"], item.get("sha256"), folder, f"baseline '{kind}'")
        fmt = item.get("format") or manifest["format"]
        examples = exported_pairs(path, fmt)
        if item.get("selected_ids_sha256"):
            examples = _with_ids(examples, item["selected_ids_sha256"], path, fmt, pool)
        if item.get("rows") is not None and len(examples) != int(item["rows"]):
            raise ScarError(f"baseline '{kind}' {path} holds {len(examples)} rows, the manifest records {item['rows']}")
        if item.get("selected_ids_sha256") and ids_sha256([e.id for e in examples]) != item["selected_ids_sha256"]:
            raise ScarError(f"baseline '{kind}' {path}: the sha256 of its rows' ids is not the manifest's; it "
                            "changed since the manifest was written, or its export shape lost the rows' earlier turns")
        out.append(Subset(kind, examples, f"baseline '{kind}' listed in the manifest", str(path), item.get("sha256")))
    return out


# --------------------------------------------------------------------------- pool, held-out rows, own baselines


def clean_pool(pool: list[Example], manifest: dict):
    """scar_core.clean over the pool with the options the manifest recorded (those clean() accepts)."""
    options = ((manifest.get("cleaning") or {}).get("options") or {})
    accepted = inspect.signature(clean).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted and k not in ("scores",)}
    if isinstance(kwargs.get("lang"), list):
        kwargs["lang"] = ",".join(kwargs["lang"])
    return clean(pool, **kwargs)


def eligible(report, manifest: dict) -> np.ndarray:
    """Pool positions a cut could take: unflagged (unless the cut kept flagged rows), one per duplicate cluster."""
    if (manifest.get("selection") or {}).get("keep_flagged"):
        return report.rows("all")
    return report.rows("kept")


def touching(clusters: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Mask of the rows at `positions` and every row sharing a duplicate cluster (-1: none) with one of them."""
    clusters = np.asarray(clusters)
    mask = np.zeros(len(clusters), bool)
    mask[positions] = True
    hit = np.unique(clusters[positions][clusters[positions] >= 0])
    mask |= np.isin(clusters, hit) & (clusters >= 0)
    return mask


def held_out_rows(pool: list[Example], report, manifest: dict, used_ids: set[str], size: int, seed: int) -> np.ndarray:
    """Sorted pool positions of a seeded sample of `size` rows that no subset was drawn from: eligible,
    not in a subset and in no duplicate cluster with a subset's row."""
    used = np.array([ex.id in used_ids for ex in pool], bool)
    blocked = touching(report.cluster_ids, np.flatnonzero(used))
    first = _first_of_id([ex.id for ex in pool])
    free = np.array([p for p in eligible(report, manifest) if not blocked[p] and first[p]], dtype=np.int64)
    if len(free) == 0:
        raise ScarError("no pool rows are left for a held-out set (every eligible row is in a subset): give "
                        "prompts to evaluate on with --eval")
    take = min(size, len(free))
    return np.sort(np.random.default_rng(seed).choice(free, size=take, replace=False))


def held_out_scored(pool: list[Example], score: np.ndarray, clusters: np.ndarray, left_out_by: np.ndarray,
                    size: int, seed: int, keep_flagged: bool = False) -> np.ndarray:
    """Sorted positions of a seeded sample of `size` rows a cut of these scores could take (scored, cleaning's
    eligibility, one row per content id): a scoring run's held-out set, before any subset is drawn (the
    curve then leaves them and their duplicate clusters out of every subset)."""
    free = np.flatnonzero(eligible_rows(score, clusters, left_out_by, keep_flagged)[0]
                          & _first_of_id([ex.id for ex in pool]))
    if len(free) < 2:
        raise ScarError(f"only {len(free)} eligible scored rows: too few to hold some out for evaluation")
    take = min(size, len(free) // 2)  # at most half: the rest is what the curve trains on
    return np.sort(np.random.default_rng(seed).choice(free, size=take, replace=False))


def _first_of_id(ids: list[str]) -> np.ndarray:
    seen, out = set(), np.zeros(len(ids), bool)
    for p, i in enumerate(ids):
        if i not in seen:
            seen.add(i)
            out[p] = True
    return out


def own_baselines(pool: list[Example], report, manifest: dict, k: int, held_out: np.ndarray, seed: int,
                  kinds: Sequence[str] = OWN_BASELINES) -> list[Subset]:
    """Baselines of k rows from the eligible pool rows outside the held-out set (and their duplicate
    clusters): "random" a seeded draw, "longest" the longest responses in words (ties in pool order)."""
    blocked = touching(report.cluster_ids, held_out)
    first = _first_of_id([ex.id for ex in pool])
    free = np.array([p for p in eligible(report, manifest) if not blocked[p] and first[p]], dtype=np.int64)
    if len(free) < k:
        raise ScarError(f"only {len(free)} pool rows are free for baselines of {k} rows")
    out = []
    for kind in kinds:
        if kind == "random":
            chosen = np.sort(np.random.default_rng(seed).choice(free, size=k, replace=False))
            origin = f"built here: {k} random eligible pool rows (seed {seed}), none held out"
        elif kind == "longest":
            words = response_words([pool[p] for p in free])
            chosen = free[np.argsort(-words, kind="stable")[:k]]
            origin = f"built here: the {k} eligible pool rows with the longest responses (words), none held out"
        else:
            raise ScarError(f"unknown baseline '{kind}'; validate builds {', '.join(OWN_BASELINES)}")
        out.append(Subset(kind, [pool[p] for p in chosen], origin))
    return out


def read_eval(path: str | Path, fmt: str | None = None) -> list[Example]:
    """Held-out prompts with reference answers from any file scar_core.load reads (one pair per row,
    a conversation's last answered turn); an unknown shape is an InputError naming the file."""
    return load(path, fmt=fmt).examples


def sample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    if size is None or size >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=size, replace=False))
    return [examples[i] for i in keep]


def prepare(manifest_path: str | Path, *, eval_path: str | None = None, eval_format: str | None = None,
            eval_rows: int | None = None, seed: int = 0, need_pool: bool = False) -> Study:
    """Read and check everything: the manifest, the cut, the baselines (the manifest's, or built here from
    the pool), the held-out set. Raises ScarError before any model is loaded."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    folder = manifest_path.parent
    listed_baselines = bool(manifest.get("baselines"))
    eval_file = None
    if eval_path is not None:
        eval_file = Path(eval_path)
        if not eval_file.is_file():
            raise ScarError(f"{eval_path}: no such file (--eval)")
    pool = read_pool(manifest, folder) if (need_pool or not listed_baselines or eval_file is None) else None
    cut = read_cut(manifest_path, manifest, pool)
    k = len(cut.examples)
    notes: list[str] = []
    baselines = manifest_baselines(manifest, folder, pool)
    report = clean_pool(pool, manifest) if pool is not None else None
    used = {e.id for e in cut.examples} | {e.id for b in baselines or [] for e in b.examples}
    held = np.zeros(0, np.int64)
    if eval_file is None:
        size = eval_rows or DEFAULT_EVAL_ROWS
        held = held_out_rows(pool, report, manifest, used, size, seed)
        examples = [pool[p] for p in held]
        eval_info = {"source": "held-out split of the pool", "path": None, "sha256": None, "requested_rows": size,
                     "how": f"a seeded sample (seed {seed}) of eligible pool rows that no subset was drawn from: "
                            "in no subset and in no duplicate cluster with a subset's row"}
        notes.append(f"evaluated on {len(examples)} held-out pool rows that no subset was drawn from (no --eval given)")
    baselines_from = "manifest"
    if baselines is None:
        baselines = own_baselines(pool, report, manifest, k, held, seed)
        baselines_from = "built here"
        notes.append(f"the manifest lists no baselines: built random and longest-{k} from the pool here "
                     "(eligible rows under the manifest's cleaning options, none held out)")
    else:
        notes.append(f"baselines from the manifest: {', '.join(b.name for b in baselines)} (sha256 checked)")
    trained = {e.id for e in cut.examples} | {e.id for b in baselines for e in b.examples}
    overlap = [e for e in examples if e.id in trained] if eval_file is None else []
    if eval_file is not None:
        rows = read_eval(eval_file, eval_format)
        unique = list({e.id: e for e in rows}.values())
        overlap = [e for e in unique if e.id in trained]
        examples = sample([e for e in unique if e.id not in trained], eval_rows, seed)
        eval_info = {"source": "file", "path": str(eval_file), "sha256": file_sha256(eval_file),
                     "rows_in_file": len(rows), "duplicate_rows_dropped": len(rows) - len(unique),
                     "sampled": None if eval_rows is None or len(examples) == len(unique) - len(overlap)
                     else {"rows": len(examples), "seed": seed}}
    if overlap:  # never evaluate on a row a subset trains on
        examples = [e for e in examples if e.id not in trained]
        notes.append(f"dropped {len(overlap)} eval rows that a subset trains on (same content id)")
    eval_info["trained_rows_dropped"] = len(overlap)
    eval_info["rows"] = len(examples)
    if not examples:
        raise ScarError("no eval rows are left: every one is in a subset that is trained on")
    return Study(manifest_path, manifest, cut, baselines, baselines_from, examples, eval_info, pool, report, held,
                 notes)


# --------------------------------------------------------------------------- the base model


@dataclass
class BaseModel:
    name: str
    location: str
    model: torch.nn.Module  # plain (not quantised) fp32 weights on the CPU, never trained itself
    tokenizer: object

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        return {"name": self.name, "location": self.location, "parameters": self.parameters}


def load_base(name: str = DEFAULT_MODEL) -> BaseModel:
    """The model to tune: "default" is the bundled SmolLM2-135M-Instruct, de-quantised from its GGUF as
    scar_core.lm loads it, then rebuilt as a plain torch model (a model loaded from a GGUF counts as
    quantised, and transformers refuses to train one); any Hugging Face causal LM id or folder otherwise."""
    from transformers import AutoModelForCausalLM

    lm_name = "smollm2" if name == DEFAULT_MODEL else name
    try:
        lm = load_language_model(lm_name, device="cpu", precision="fp32")
    except ScarError as e:
        raise ScarError(f"cannot load the model to tune '{name}': {e}") from None
    except Exception as e:  # a folder with a broken config or weights
        raise ScarError(f"cannot load the model to tune '{name}': {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    model = lm.model
    if getattr(model.config, "quantization_config", None) is not None or getattr(model, "is_quantized", False):
        config = copy.deepcopy(model.config)
        del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        model = plain
    if name == DEFAULT_MODEL:
        from scar_core.lm import bundled_lm_file
        location = str(bundled_lm_file())
    else:
        location = name
    return BaseModel(name, location, model.float().eval(), lm.tokenizer)


# --------------------------------------------------------------------------- training


def prompt_text(tokenizer, ex: Example) -> str:
    """The prompt as scar_core.lm renders it: the chat template with the generation prompt, or
    "instruction\\n\\n" for a model without one."""
    messages = ([{"role": "system", "content": ex.system}] if ex.system else []) + [
        {"role": t["role"], "content": t["content"]} for t in ex.context] + [
        {"role": "user", "content": ex.instruction}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return f"{ex.instruction}\n\n"


def encode(tokenizer, ex: Example, max_tokens: int, end: int | None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) under scar_core.lm's length rule: the prompt keeps at most half of
    `max_tokens` (its latest part), the answer the rest (its beginning); an answer that fits whole is
    followed by the token that ends the turn, so the tuned model learns to stop."""
    prompt = tokenizer(prompt_text(tokenizer, ex), add_special_tokens=False)["input_ids"]
    answer = tokenizer(ex.response, add_special_tokens=False)["input_ids"]
    keep_prompt = min(len(prompt), max_tokens // 2)
    keep_answer = max_tokens - keep_prompt
    answer = answer[:keep_answer]
    if end is not None and len(answer) < keep_answer:
        answer = [*answer, end]
    return prompt[len(prompt) - keep_prompt:], answer


def training_plan(answer_tokens: Sequence[int], batch_size: int, seed: int, *, steps: int | None = None,
                  tokens: int | None = None) -> list[int]:
    """Row positions in the order they are trained on: passes over the rows, each in a fresh seeded
    order, until `steps` batches of `batch_size`, or until the row with which the answer tokens reach
    `tokens` (the last batch may then be short)."""
    n = len(answer_tokens)
    if n == 0:
        raise ScarError("a subset to tune on has no rows")
    if steps is None and tokens is None:
        raise ValueError("training_plan needs steps or tokens")
    if tokens is not None and sum(answer_tokens) == 0:
        raise ScarError("a subset to tune on has no answer tokens")
    rng = np.random.default_rng(seed)
    order: list[int] = []
    total = 0
    while True:
        for i in rng.permutation(n).tolist():
            order.append(i)
            total += answer_tokens[i]
            if steps is not None and len(order) == steps * batch_size:
                return order
            if tokens is not None and total >= tokens:
                return order


@dataclass
class Tuned:
    model: torch.nn.Module  # the LoRA adapter merged into a copy of the base weights
    steps: int
    rows_seen: int
    answer_tokens: int
    input_tokens: int
    seconds: float
    train_loss: float


def tune(base: BaseModel, examples: list[Example], settings: Settings, *, steps: int | None = None,
         tokens: int | None = None) -> Tuned:
    """LoRA-fine-tune a copy of the base model on `examples` with TRL's SFTTrainer, for `steps` optimizer
    steps or until `tokens` answer tokens (see training_plan); loss on answer tokens only."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    device, dtype = resolve(settings.device, settings.precision)
    tokenizer = base.tokenizer
    end = end_of_turn(tokenizer)
    encoded = [encode(tokenizer, ex, settings.max_tokens, end) for ex in examples]
    plan = training_plan([len(a) for _, a in encoded], settings.batch_size, settings.seed, steps=steps, tokens=tokens)
    rows = [{"input_ids": encoded[i][0] + encoded[i][1],
             "completion_mask": [0] * len(encoded[i][0]) + [1] * len(encoded[i][1])} for i in plan]
    n_steps = -(-len(plan) // settings.batch_size)
    cpu = device.type == "cpu"
    micro = 1 if cpu else settings.batch_size  # on a CPU one row at a time pads nothing; the step is the same
    with tempfile.TemporaryDirectory(prefix="scar-validate-") as out, _quiet():
        config = SFTConfig(
            output_dir=out, max_steps=n_steps, num_train_epochs=1, per_device_train_batch_size=micro,
            gradient_accumulation_steps=settings.batch_size // micro, learning_rate=settings.learning_rate,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, seed=settings.seed,
            data_seed=settings.seed, completion_only_loss=True, max_length=None, packing=False,
            train_sampling_strategy="sequential", shuffle_dataset=False, dataloader_num_workers=0,
            report_to=[], save_strategy="no", logging_strategy="no", eval_strategy="no",
            disable_tqdm=True, use_cpu=cpu, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
            gradient_checkpointing=False, remove_unused_columns=True, dataset_num_proc=None)  # 135M fits
        lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.alpha, lora_dropout=0.0, bias="none",
                          target_modules="all-linear", task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=copy.deepcopy(base.model), args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=lora)
        trainer.remove_callback(PrinterCallback)  # it prints the run's metrics on stdout, where the table goes
        trainer.remove_callback(ProgressCallback)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        if trainer.state.global_step != n_steps:
            raise AssertionError(f"the trainer took {trainer.state.global_step} steps, not the planned {n_steps}")
        merged = trainer.model.merge_and_unload().to("cpu").float().eval()
    del trainer
    return Tuned(merged, n_steps, len(plan), sum(len(encoded[i][1]) for i in plan),
                 sum(len(r["input_ids"]) for r in rows), seconds, float(result.training_loss))


@contextmanager
def _quiet():
    """Library chatter off while tuning: transformers' info and deprecation notices, datasets' progress bars."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if not bars:
            enable_progress_bars()


# --------------------------------------------------------------------------- evaluation


@dataclass
class Scored:
    """Per eval row: summed NLL over its answer tokens, and how many tokens."""

    nll_sum: np.ndarray  # (N,) float64
    tokens: np.ndarray   # (N,) int64
    seconds: float

    @property
    def nll(self) -> float:
        """Mean NLL per answer token over the whole set (token-weighted)."""
        return float(self.nll_sum.sum() / max(int(self.tokens.sum()), 1))


def evaluate(model: torch.nn.Module, tokenizer, examples: list[Example], settings: Settings,
             name: str = "tuned") -> Scored:
    """Each reference answer's NLL given its prompt under `model`, with scar_core.lm (answer tokens only)."""
    device, dtype = resolve(settings.device, settings.precision)
    model = model.to(device).eval()
    start = time.perf_counter()
    s = measure_surprisal(examples, LanguageModel(name, model, tokenizer, device, dtype), max_tokens=settings.max_tokens)
    seconds = time.perf_counter() - start
    model.to("cpu")
    counted = ~np.isnan(s.nll)
    return Scored(np.where(counted, s.nll * s.tokens, 0.0), np.where(counted, s.tokens, 0).astype(np.int64), seconds)


def paired_delta(a: Scored, b: Scored, seed: int, rounds: int = BOOTSTRAP) -> dict:
    """b's eval NLL minus a's, with a 95% paired bootstrap interval over eval prompts (positive: b is worse)."""
    delta = b.nll - a.nll
    rng = np.random.default_rng(seed)
    n = len(a.tokens)
    draws = rng.integers(0, n, size=(rounds, n))
    tok = a.tokens[draws].sum(axis=1).clip(min=1)
    boot = (b.nll_sum[draws].sum(axis=1) - a.nll_sum[draws].sum(axis=1)) / tok
    lo, hi = np.quantile(boot, [0.025, 0.975])
    per_a = np.divide(a.nll_sum, a.tokens, out=np.zeros(n), where=a.tokens > 0)
    per_b = np.divide(b.nll_sum, b.tokens, out=np.zeros(n), where=b.tokens > 0)
    return {"delta_nll": delta, "ci95": [float(lo), float(hi)], "prompts_lower_nll": int((per_b < per_a).sum()),
            "prompts": n}


# --------------------------------------------------------------------------- the judge


JUDGE_PROMPT = """Compare two AI assistants' responses to the same user request. Judge which one answers it better: \
more helpful, more correct, clearer. Do not let the order of the responses or their length decide.

[User request]
{prompt}

[Response A]
{a}
[End of Response A]

[Response B]
{b}
[End of Response B]

Reply with one letter and nothing else: A if Response A is better, B if Response B is better, T for a tie."""
JUDGE_KIND = "validate-pairwise"  # the call cache's kind for the judge's requests
VERDICT = re.compile(r"^\W*(?:response\s+)?(a|b|t|tie)\b", re.I)
NO_JUDGE = ("not measured: no judge endpoint configured (give --base-url or $OPENAI_BASE_URL, and --judge-model: "
            "any OpenAI-compatible chat-completions server)")


@dataclass
class Judge:
    """A pairwise judge behind an OpenAI-compatible chat-completions endpoint (the synth back end)."""

    client: Client
    base_url: str = ""
    max_tokens: int = 8
    cache: CallCache | None = None  # replies kept as they arrive: judging again asks only what is missing

    def describe(self) -> dict:
        return {"base_url": self.base_url, "model": self.client.model, "max_tokens": self.max_tokens,
                "temperature": 0.0}

    def close(self) -> None:
        """Close the endpoint's client and the call cache."""
        self.client.close()
        if self.cache is not None:
            self.cache.close()


def judge_prompt(ex: Example, a: str, b: str) -> str:
    """The judge's request for one ordered pair (the conversation's earlier turns, if any, before the request)."""
    earlier = "".join(f"{t['role']}: {t['content']}\n" for t in ex.context)
    return JUDGE_PROMPT.format(prompt=earlier + ex.instruction, a=a, b=b)


def verdict(reply: str) -> str | None:
    """"A", "B" or "tie" from a judge reply ("A", "Response B.", "T", "tie"); None when unreadable."""
    m = VERDICT.match(reply or "")
    if not m:
        return None
    return {"a": "A", "b": "B"}.get(m.group(1).lower(), "tie")


def generate(model: torch.nn.Module, tokenizer, examples: list[Example], settings: Settings) -> list[str]:
    """Each prompt's answer from `model`: greedy decoding, at most `settings.gen_tokens` new tokens, stopping at
    the token that ends the turn; the prompt rendered as in training (latest max_tokens/2 tokens kept). On a
    CPU one prompt at a time (no padding); on a GPU GEN_BATCH prompts at a time, left-padded (the answers
    then depend on the batch's padding, the same for a seed and settings)."""
    device, dtype = resolve(settings.device, settings.precision)
    model = model.to(device).eval()
    end = end_of_turn(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    prompts = []
    for ex in examples:
        ids = tokenizer(prompt_text(tokenizer, ex), add_special_tokens=False)["input_ids"]
        prompts.append(ids[len(ids) - min(len(ids), settings.max_tokens // 2):])
    step = 1 if device.type == "cpu" else GEN_BATCH
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        for lo in range(0, len(prompts), step):
            batch = prompts[lo:lo + step]
            width = max(len(p) for p in batch)
            x = torch.tensor([[pad or 0] * (width - len(p)) + p for p in batch], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            y = model.generate(x, attention_mask=mask, max_new_tokens=settings.gen_tokens, do_sample=False,
                               num_beams=1, eos_token_id=end, pad_token_id=pad)
            out += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in y]
    model.to("cpu")
    return out


def win_rate(judge: Judge, examples: list[Example], mine: list[str], theirs: list[str], seed: int,
             rounds: int = BOOTSTRAP) -> dict:
    """How often `mine` beats `theirs` by the judge, each pair asked in both orders (position swapped):
    a prompt scores 1 when `mine` wins in both orders, 0 when it loses in both, 1/2 otherwise (a tie, an
    inconsistent pair, an unreadable reply); the win rate is the mean, with a 95% percentile bootstrap
    interval over prompts."""
    prompts = []
    for ex, a, b in zip(examples, mine, theirs):
        prompts += [judge_prompt(ex, a, b), judge_prompt(ex, b, a)]
    replies, cached = ask(judge.client, judge.cache, [(JUDGE_KIND, p) for p in prompts], 0.0, judge.max_tokens)
    said = [verdict(r) for r in replies]
    outcome = np.empty(len(examples))
    counts = {"wins": 0, "losses": 0, "ties": 0, "inconsistent": 0}
    for i in range(len(examples)):
        first, second = said[2 * i], said[2 * i + 1]  # mine is A in the first order, B in the second
        if first == "A" and second == "B":
            outcome[i], kind = 1.0, "wins"
        elif first == "B" and second == "A":
            outcome[i], kind = 0.0, "losses"
        else:
            outcome[i], kind = 0.5, "ties" if first == second == "tie" else "inconsistent"
        counts[kind] += 1
    draws = np.random.default_rng(seed).integers(0, len(outcome), size=(rounds, len(outcome)))
    lo, hi = np.quantile(outcome[draws].mean(axis=1), [0.025, 0.975])
    return {"win_rate": float(outcome.mean()), "ci95": [float(lo), float(hi)], "prompts": len(outcome), **counts,
            "unreadable_replies": sum(v is None for v in said), "judge_calls": len(prompts),
            "judge_calls_cached": cached}


def judged_prompts(examples: list[Example], settings: Settings) -> list[Example]:
    """The eval prompts the judge sees: a seeded sample of `judge_rows` (all when fewer)."""
    return sample(examples, settings.judge_rows, settings.seed)


def judge_all(judge: Judge, examples: list[Example], answers: dict[str, list[str]], against: str, seed: int,
              log: Log) -> tuple[dict[str, dict], str | None]:
    """({subset: win_rate(...)} of every answered subset against `against`, None) or ({}, why not)."""
    if against not in answers:
        return {}, f"not measured: no '{against}' subset to judge against"
    out = {}
    try:
        for name, mine in answers.items():
            if name != against:
                out[name] = win_rate(judge, examples, mine, answers[against], seed)
                log(f"  judge: {name} vs {against}: win rate {out[name]['win_rate']:.1%}")
    except BackendError as e:  # the tuned models' NLL stands; the judge's column says what went wrong
        return {}, f"not measured: the judge failed ({e})"
    return out, None


# --------------------------------------------------------------------------- the experiment


def run(study: Study, base: BaseModel, settings: Settings, *, ratios: Sequence[float] | None = None,
        scores: dict[str, float] | None = None, judge: Judge | None = None, log: Log = say) -> dict:
    """Tune on the cut and each baseline, evaluate every model and the untuned one, and with a `judge` the
    pairwise win rate of each subset's answers against random's: the report (JSON-ready)."""
    settings.check()
    device, dtype = resolve(settings.device, settings.precision)
    cut_steps = settings.steps_for(len(study.cut.examples))
    log(f"validate: {len(study.eval_examples)} eval rows; tuning {base.name} with LoRA r={settings.lora_r} "
        f"on {1 + len(study.baselines)} subsets ({settings.budget} budget, the cut {cut_steps} steps of "
        f"{settings.batch_size} rows) on {device} {precision_name(dtype)}")
    untuned = evaluate(base.model, base.tokenizer, study.eval_examples, settings, "untuned")
    log(f"  untuned: eval NLL {untuned.nll:.4f} ({untuned.seconds:.0f} s)")
    results = [_row("untuned", None, None, untuned, "the base model, not tuned")]
    scored: dict[str, Scored] = {}
    judged = judged_prompts(study.eval_examples, settings) if judge else []
    answers: dict[str, list[str]] = {}
    budget_tokens = None
    for subset in [study.cut, *study.baselines]:
        if subset is study.cut or settings.budget == "steps":
            tuned = tune(base, subset.examples, settings, steps=cut_steps)
        else:
            tuned = tune(base, subset.examples, settings, tokens=budget_tokens)
        if subset is study.cut:
            budget_tokens = tuned.answer_tokens
        s = evaluate(tuned.model, base.tokenizer, study.eval_examples, settings, subset.name)
        if judge:
            answers[subset.name] = generate(tuned.model, base.tokenizer, judged, settings)
        del tuned.model
        scored[subset.name] = s
        results.append(_row(subset.name, subset, tuned, s, subset.origin))
        log(f"  {subset.name}: {tuned.steps} steps, {tuned.answer_tokens} answer tokens, train {tuned.seconds:.0f} s, "
            f"eval NLL {s.nll:.4f}")
    cut = scored["cut"]
    for row in results:
        other = scored.get(row["subset"]) if row["subset"] != "untuned" else untuned
        if row["subset"] != "cut":
            row["vs_cut"] = paired_delta(cut, other, settings.seed)
    wins, why_not = judge_all(judge, judged, answers, "random", settings.seed, log) if judge else ({}, NO_JUDGE)
    for row in results:
        row["win_vs_random"] = wins.get(row["subset"])
    report = {
        "what": "LoRA fine-tunes of one base model on the cut and on matched baselines, compared on held-out "
                "prompts: mean NLL per answer token of the reference answers given the prompt (lower is better)",
        "manifest": str(study.manifest_path), "manifest_sha256": file_sha256(study.manifest_path),
        "selection": study.cut.path, "selection_sha256": study.cut.sha256,
        "baselines_from": study.baselines_from,
        "base_model": base.describe(),
        "settings": settings_record(settings, cut_steps),
        "eval": {**study.eval_info, "answer_tokens": int(untuned.tokens.sum()), "metric": NLL_METRIC},
        "results": results,
        **judge_record(judge, judged, answers, why_not),
        "notes": study.notes,
        "versions": library_versions(),
    }
    if ratios:
        report["curve"] = curve(study, base, settings, ratios, scores or {}, judge=judge, log=log)
    return report


NLL_METRIC = ("token-weighted mean NLL (nats) of the reference answers' tokens given the prompt "
              "(chat template; answer tokens only; the turn-ending token not counted)")
WIN_RULE = ("each pair judged in both orders (position swapped); a prompt counts 1 when the subset's answer wins "
            "in both, 0 when it loses in both, 1/2 otherwise (tie, inconsistent, unreadable); 95% interval: "
            f"percentile bootstrap over prompts, {BOOTSTRAP} rounds")


def settings_record(settings: Settings, cut_steps: int | None = None) -> dict:
    """The settings every model was tuned and evaluated with, as the report records them."""
    device, dtype = resolve(settings.device, settings.precision)
    return {"seed": settings.seed, "budget": settings.budget, "cut_steps": cut_steps,
            "steps": settings.steps, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate, "lr_schedule": "constant", "lora_r": settings.lora_r,
            "lora_alpha": settings.alpha, "lora_dropout": 0.0, "lora_targets": "all-linear",
            "max_tokens": settings.max_tokens, "device": str(device), "precision": precision_name(dtype),
            "gen_tokens": settings.gen_tokens, "judge_rows": settings.judge_rows,
            "trainer": "trl.SFTTrainer (completion-only loss) + peft.LoraConfig"}


def judge_record(judge: Judge | None, judged: list[Example], answers: dict[str, list[str]],
                 why_not: str | None) -> dict:
    """The report's judge part: who judged, how, which prompts and every model's answers; or why not."""
    if judge is None or why_not is not None:
        return {"judge": None, "win_rate_note": why_not or NO_JUDGE}
    return {"judge": {**judge.describe(), "rule": WIN_RULE, "against": "random", "prompts": len(judged),
                      "generation": "greedy, one prompt at a time, at most gen_tokens new tokens"},
            "win_rate_note": None,
            "generations": {"prompt_ids": [e.id for e in judged], **answers}}


def _row(name: str, subset: Subset | None, tuned: Tuned | None, s: Scored, origin: str) -> dict:
    return {"subset": name, "rows": len(subset.examples) if subset else None,
            "steps": tuned.steps if tuned else None, "rows_seen": tuned.rows_seen if tuned else None,
            "answer_tokens": tuned.answer_tokens if tuned else None,
            "input_tokens": tuned.input_tokens if tuned else None,
            "train_seconds": round(tuned.seconds, 2) if tuned else None,
            "train_loss": tuned.train_loss if tuned else None,
            "eval_nll": s.nll, "eval_perplexity": math.exp(s.nll), "eval_seconds": round(s.seconds, 2),
            "win_vs_random": None, "origin": origin, "path": subset.path if subset else None,
            "sha256": subset.sha256 if subset else None}


def read_scores(path: str | Path) -> dict[str, float]:
    """{id: score} from what `python -m scar_core score` writes (JSONL of id + score per row)."""
    path = Path(path)
    if not path.is_file():
        raise ScarError(f"{path}: no such file (--scores)")
    out: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[str(row["id"])] = float(row["score"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise ScarError(f"{path}, line {n}: expected a JSON object with 'id' and 'score', as "
                                "`python -m scar_core score` writes") from None
    if not out:
        raise ScarError(f"{path}: no scores")
    return out


def curve(study: Study, base: BaseModel, settings: Settings, ratios: Sequence[float], scores: dict[str, float],
          judge: Judge | None = None, log: Log = say) -> list[dict]:
    """curve_points over the manifest's pool: its scores, its cleaning, the held-out rows left out."""
    pool, report = study.pool, study.pool_report
    score = np.array([scores.get(ex.id, np.nan) for ex in pool], dtype=np.float64)
    if np.isnan(score).all():
        raise ScarError("--scores holds no score for any pool row: score the same pool the manifest names")
    keep_flagged = bool((study.manifest.get("selection") or {}).get("keep_flagged"))
    return curve_points(pool, score, report.cluster_ids, report.left_out_by, study.held_out, study.eval_examples,
                        base, settings, ratios, keep_flagged=keep_flagged, judge=judge, log=log)


def curve_points(pool: list[Example], score: np.ndarray, clusters: np.ndarray, left_out_by: np.ndarray,
                 held_out: np.ndarray, eval_examples: list[Example], base: BaseModel, settings: Settings,
                 ratios: Sequence[float], *, keep_flagged: bool = False, judge: Judge | None = None,
                 log: Log = say, on_point: Callable[[dict], None] | None = None) -> list[dict]:
    """Eval NLL (and with a `judge` the cut's win rate against random) by the share of the pool kept: at each
    ratio the cut (scar_core.select on `score` under the pool's cleaning, the `held_out` positions, the eval
    rows and their duplicate clusters left out) and a seeded random draw of as many eligible rows.
    `on_point` sees each model's point as it is measured (the app's job stores them as they come; the cut's
    win rate is written into its point once random's answers are in)."""
    blocked = touching(clusters, np.asarray(held_out, dtype=np.int64))
    eval_ids = {e.id for e in eval_examples}
    blocked |= np.array([ex.id in eval_ids for ex in pool], bool)
    score = np.where(blocked, np.nan, np.asarray(score, dtype=np.float64))
    free = np.flatnonzero(eligible_rows(score, clusters, left_out_by, keep_flagged)[0])
    judged = judged_prompts(eval_examples, settings) if judge else []
    out = []
    for ratio in ratios:
        chosen = select(score, "ratio", ratio, clusters=clusters, left_out_by=left_out_by, keep_flagged=keep_flagged)
        k = len(chosen.kept)
        rnd = np.sort(np.random.default_rng(settings.seed).choice(free, size=min(k, len(free)), replace=False))
        budget = None
        answers: dict[str, list[str]] = {}
        points = []
        for name, rows in (("cut", chosen.kept), ("random", rnd)):
            examples = [pool[p] for p in rows]
            if name == "cut" or settings.budget == "steps":
                tuned = tune(base, examples, settings, steps=settings.steps_for(k))
                budget = tuned.answer_tokens
            else:
                tuned = tune(base, examples, settings, tokens=budget)
            s = evaluate(tuned.model, base.tokenizer, eval_examples, settings, f"{name}@{ratio}")
            start = time.perf_counter()
            if judge:
                answers[name] = generate(tuned.model, base.tokenizer, judged, settings)
            del tuned.model
            points.append({"ratio": ratio, "subset": name, "rows": len(examples), "steps": tuned.steps,
                           "answer_tokens": tuned.answer_tokens, "input_tokens": tuned.input_tokens,
                           "train_seconds": round(tuned.seconds, 2), "eval_seconds": round(s.seconds, 2),
                           "generated": len(answers.get(name, [])),
                           "generate_seconds": round(time.perf_counter() - start, 2),
                           "eval_nll": s.nll, "win_vs_random": None})
            out.append(points[-1])
            log(f"  curve {ratio:g} {name}: {len(examples)} rows, eval NLL {s.nll:.4f}")
            if on_point:
                on_point(points[-1])
        if judge:  # written into the cut's point, already in `out`
            wins, why_not = judge_all(judge, judged, answers, "random", settings.seed, log)
            points[0]["win_vs_random"] = wins.get("cut")
            points[0]["win_rate_note"] = why_not
    return out


def library_versions() -> dict:
    from scar_core.export import versions

    import peft
    import trl

    return {**versions(), "trl": trl.__version__, "peft": peft.__version__}


# --------------------------------------------------------------------------- the table


def table(report: dict) -> str:
    """The results as a plain-text table; the "win vs random" column shows the judge's win rate with its 95%
    interval, or n/a with the reason below the table."""
    head = ["subset", "rows", "steps", "tokens", "train s", "eval NLL", "ppl", "vs cut [95% CI]", "win vs random"]
    lines = []
    for r in report["results"]:
        vs = r.get("vs_cut")
        cells = [r["subset"], _n(r["rows"]), _n(r["steps"]), _n(r["answer_tokens"]),
                 "" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}", f"{r['eval_nll']:.4f}",
                 f"{r['eval_perplexity']:.2f}",
                 "" if not vs else f"{vs['delta_nll']:+.4f} [{vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}]",
                 _win(r.get("win_vs_random"), report.get("judge"), r["subset"])]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    out = [fmt(head), fmt(["-" * w for w in widths]), *(fmt(c) for c in lines)]
    ev = report["eval"]
    s = report["settings"]
    out.append("")
    out.append(f"eval: {ev['rows']} prompts ({ev['source']}{', ' + ev['path'] if ev.get('path') else ''}), "
               f"{ev['answer_tokens']} reference answer tokens; lower NLL is better; 'vs cut' is the subset's NLL "
               "minus the cut's (positive: worse than the cut), paired bootstrap over prompts")
    out.append(f"tuned: {report['base_model']['name']} + LoRA r={s['lora_r']} (all linear layers), lr "
               f"{s['learning_rate']:g} constant, batch {s['batch_size']}, max {s['max_tokens']} tokens, seed "
               f"{s['seed']}, {s['device']} {s['precision']}; budget: "
               + ("every subset the cut's answer tokens ('tokens' = answer tokens trained on)"
                  if s["budget"] == "tokens" else f"every subset {s['cut_steps']} steps"))
    out.append(f"baselines: {report['baselines_from']}")
    judge = report.get("judge")
    if judge:
        out.append(f"win vs random: judge {judge['model']} at {judge['base_url']} on {judge['prompts']} eval prompts, "
                   f"answers greedy up to {s['gen_tokens']} tokens; {judge['rule']}")
    else:
        out.append(f"win vs random: {report.get('win_rate_note') or NO_JUDGE}")
    if report.get("curve"):
        out.append("")
        out.append("curve (eval NLL by share of the pool kept):")
        for c in report["curve"]:
            won = c.get("win_vs_random")
            out.append(f"  {c['ratio']:<6g} {c['subset']:<7} {c['rows']:>6} rows  {c['answer_tokens']:>8} tokens  "
                       f"eval NLL {c['eval_nll']:.4f}" + (f"  win vs random {_win(won, True, 'cut')}" if won else ""))
    return "\n".join(out)


def _win(won: dict | None, judged, subset: str) -> str:
    if subset == "untuned":
        return ""
    if not judged:
        return "n/a"
    if subset == "random":
        return "(reference)"
    if won is None:
        return "n/a"
    return f"{won['win_rate']:.1%} [{won['ci95'][0]:.1%}, {won['ci95'][1]:.1%}]"


def _n(value) -> str:
    return "" if value is None else str(value)

