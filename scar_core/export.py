"""Export step: write a selection as JSONL in a chosen shape, with a manifest beside it.

Files are written to a temporary name in the same folder and renamed at the end, so a failure
(disk full, interrupted run) never leaves a half-written export behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import platform
import re
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scar_core import formats
from scar_core.baselines import baselines
from scar_core.coverage import cluster_rows
from scar_core.errors import ScarError
from scar_core.evidence import evidence
from scar_core.example import Example
from scar_core.select import Selection


def to_jsonl_lines(examples: Iterable[Example], fmt: str, scores: Iterable[float] | None = None) -> Iterable[str]:
    shape = formats.shape(fmt)
    scores = iter(scores) if scores is not None else None
    for ex in examples:
        score = float(next(scores)) if scores is not None else None
        yield json.dumps(shape.from_example(ex, score), ensure_ascii=False) + "\n"


def write_atomic(path: str | Path, lines: Iterable[str]) -> Path:
    """Write text lines to `path` through a temporary file and an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ScarError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; exports are ordinary readable files
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise ScarError(f"cannot write {path}: {e.strerror or e}; nothing was written "
                            "and any earlier file there is unchanged") from None
        raise
    return path


SHARD_ROWS = 100_000


def write_parquet_shards(folder: str | Path, records: Iterable[dict], shard_rows: int = SHARD_ROWS) -> Path:
    """Write records as Parquet shards `part-00000.parquet`, ... in order, `shard_rows` each, into
    `folder`, built in a temporary folder beside it and renamed at the end. List or dict fields are
    stored as JSON text. An existing `folder` of earlier shards is replaced; any other file there is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(not p.name.startswith("part-") for p in folder.iterdir())):
        raise ScarError(f"{folder} exists and is not a folder of Parquet shards; choose another --out")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as e:
        raise ScarError(f"cannot write to {folder.parent}: {e.strerror or e}") from None
    try:
        shard: list[dict] = []
        count = 0
        for record in itertools.chain(records, [None]):
            if record is not None:
                shard.append({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()})
            if shard and (record is None or len(shard) == shard_rows):
                pq.write_table(pa.Table.from_pylist(shard), tmp / f"part-{count:05d}.parquet")
                shard, count = [], count + 1
        os.chmod(tmp, 0o755)
        if folder.exists():
            for old in folder.iterdir():
                old.unlink()
            folder.rmdir()
        os.replace(tmp, folder)
    except BaseException as e:
        for part in tmp.glob("*"):
            part.unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()
        if isinstance(e, OSError):
            raise ScarError(f"cannot write {folder}: {e.strerror or e}") from None
        raise
    return folder


def safe_filename(name: str, suffix: str = ".jsonl", limit: int = 120) -> str:
    """A file name made safe to create in a chosen folder: no folders, no traversal, no hidden or
    control characters, only letters, digits, '.', '_' and '-', ending in `suffix`."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", name or ""))[-1]
    base = "".join(c for c in base if not unicodedata.category(c).startswith("C"))
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    if suffix and base.lower().endswith(suffix.lower()):
        base = base[: -len(suffix)].rstrip("._-")
    return (base[: limit - len(suffix)] or "export") + suffix


def export_target(folder: str | Path, name: str, suffix: str = ".jsonl") -> Path:
    """The path an export named `name` gets inside `folder` (the name is sanitised, so it stays inside)."""
    root = Path(folder).expanduser().resolve()
    target = root / safe_filename(name, suffix)
    if target.parent != root:
        raise ScarError(f"export name {name!r} does not stay inside {root}")
    return target


def ids_sha256(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict:
    """Code and library versions for manifests."""
    import numpy
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"scar_studio": commit, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": numpy.__version__}


def describe_input(path: str, sha256: str, fmt: str, rows: int, pairs: int, rejected: int) -> dict:
    """One input file as a manifest records it."""
    return {"name": Path(path).name, "path": str(path), "sha256": sha256, "format": fmt, "rows": rows,
            "pairs": pairs, "rejected": rejected}


def describe_ranker(location: str, encoder: str, weights_sha256: str | None, identity: str) -> dict:
    """A ranker checkpoint as a manifest records it (`location` as scar_core.ranker.checkpoint_location gives it)."""
    return {"location": location, "encoder": encoder, "weights_sha256": weights_sha256, "identity": identity}


def manifest(examples: Sequence[Example], fmt: str, with_scores: bool, *, inputs: list[dict], ranker: dict,
             device: str, precision: str, cleaning: dict | None, selection: dict, scope: dict,
             saved: dict | None = None, engine: str = "torch") -> dict:
    """The manifest of an export, the one builder for the CLI's `rank` and the app's Export page: what
    went in (inputs, ranker, scoring engine, device and precision, cleaning options and counts), what was scored
    (`scope`: the whole data set, or a sample of it), the selection's parameters (labels: the policy
    and the verdicts' hash) and the threshold they produced, code and library versions, and the
    sha256 of the selected ids; rows are best first. The same selection gives the same manifest from
    either, but for `saved`: in the app, which version of which saved selection and the label events
    it saw."""
    return {"format": fmt, "rows": len(examples), "with_scores": with_scores, "order": "best first",
            "selected_ids_sha256": ids_sha256([e.id for e in examples]), "inputs": inputs, "ranker": ranker,
            "engine": engine, "device": device, "precision": precision, "cleaning": cleaning, "scope": scope, "selection": selection,
            "threshold_score": selection.get("threshold_score"), "versions": versions(),
            **({"saved": saved} if saved else {})}


@dataclass(frozen=True)
class Exported:
    path: Path           # the JSONL
    manifest_path: Path  # <path>.manifest.json
    manifest: dict       # what manifest_path holds


def export(path: str | Path, examples: Sequence[Example], fmt: str, scores: Sequence[float] | None = None,
           manifest: dict | None = None) -> Exported:
    """Write `examples` (already best first) to `path` and `manifest` (see `manifest()`; a minimal one
    when None) with the written path to `<path>.manifest.json`."""
    out = write_atomic(path, to_jsonl_lines(examples, fmt, scores))
    info = {"path": str(out), **(manifest or {"format": fmt, "rows": len(examples), "with_scores": scores is not None,
                                             "selected_ids_sha256": ids_sha256([e.id for e in examples]),
                                             "versions": versions()})}
    side = write_atomic(str(out) + ".manifest.json", [manifest_json(info)])
    return Exported(out, side, info)


def manifest_json(info: dict) -> str:
    return json.dumps(info, indent=2, default=str) + "\n"


@dataclass(frozen=True)
class BundlePart:
    """One subset of a matched-baselines bundle: its rows best first, their scores (None: not written)
    and its own manifest."""

    kind: str  # "cut", "random", "longest" or "length-matched"
    name: str  # the file name the bundle lists it under
    examples: list[Example]
    scores: list[float] | None
    manifest: dict

    def jsonl(self) -> bytes:
        return "".join(to_jsonl_lines(self.examples, self.manifest["format"], self.scores)).encode("utf-8")


def baseline_name(name: str, kind: str) -> str:
    """OUT.jsonl -> OUT.random.jsonl (the suffix kept last, so the file still reads as JSONL)."""
    path = Path(name)
    return str(path.with_name(f"{path.stem}.{kind}{path.suffix or '.jsonl'}"))


def response_words(examples: Sequence[Example]) -> np.ndarray:
    """Each response's length in words as the store counts them (db.browse.words: spaces and line breaks
    + 1), the length the baselines match and the evidence reports: the Select page's panel, the Export
    page's bundle and `rank --baselines` then take the same longest rows."""
    return np.array([ex.response.count(" ") + ex.response.count("\n") + 1 for ex in examples], dtype=np.int64)


def subset_manifest(info: dict, examples: Sequence[Example], selection: dict) -> dict:
    """The manifest of another subset of the pool a manifest `info` describes (`manifest()`: same inputs,
    ranker, scoring, cleaning and scope): its own rows, ids hash and selection; no `saved`, which names
    the saved selection `info` is."""
    return {**{k: v for k, v in info.items() if k != "saved"}, "rows": len(examples),
            "selected_ids_sha256": ids_sha256([e.id for e in examples]), "selection": selection,
            "threshold_score": selection.get("threshold_score")}


def matched_bundle(cut: Selection, examples: Sequence[Example], scores: np.ndarray, info: dict, name: str, *,
                   vectors: np.ndarray, sources: np.ndarray, labels: np.ndarray | None, seed: int,
                   clusters: np.ndarray | None = None) -> list[BundlePart]:
    """The cut and its three matched baselines (scar_core.baselines: the same size, cleaning, quotas and
    labels), the one builder for `rank --baselines` and the Export page's bundle. Arrays align with
    `examples` (the pool the cut was made from; `labels` the decided label per row when the cut applied
    them); `info` is the cut's manifest (`manifest()`), `name` its file name. Each baseline's manifest is
    the cut's with its own rows and selection; the cut's gains `baselines` (file name, rows, sha256, how
    each was made) and `evidence` (scar_core.evidence over all four, clusters: seeded k-means of the cut's
    pool, or `clusters` when the cut's coverage already made them). The cut comes first."""
    scores = np.asarray(scores, dtype=np.float64)
    with_scores = info["with_scores"]
    lengths = response_words(examples)
    subsets = baselines(cut, scores, lengths, sources=sources, labels=labels, seed=seed)
    parts, listed = [], []
    for kind, subset in subsets.items():
        rows = [examples[i] for i in subset.kept]
        part = BundlePart(kind, baseline_name(name, kind), rows, scores[subset.kept].tolist() if with_scores else None,
                          subset_manifest(info, rows, subset.params()))
        parts.append(part)
        listed.append({"kind": kind, "path": part.name, "rows": len(rows),
                       "sha256": hashlib.sha256(part.jsonl()).hexdigest(),
                       "selected_ids_sha256": part.manifest["selected_ids_sha256"], "made": subset.params()["ordering"]})
    if clusters is None:
        clusters = cluster_rows(vectors, pool=cut.pool, seed=seed)[0]
    found = evidence({"cut": cut, **subsets}, scores=scores, lengths=lengths, vectors=vectors, clusters=clusters,
                     sources=sources, labels=labels, pool=cut.pool)
    kept = [examples[i] for i in cut.kept]
    head = BundlePart("cut", name, kept, scores[cut.kept].tolist() if with_scores else None,
                      {**info, "baselines": listed, "evidence": found.record})
    return [head, *parts]
