"""Signals: per-row values beside the SCAR score, and a weighted rule that lets them drive a cut.

Each signal is one number per row with the settings that made it, so a lead can check a cut against
what else is known about a row, or cut on a blend. The kinds (KINDS):
- `length`: the response's length in tokens of the ranker's tokenizer (longest-k is a tough baseline).
- `novelty`: kNN novelty, the mean cosine distance from a response's v_lf embedding to its `k` nearest
  other responses of the run (scikit-learn NearestNeighbors); high = unlike the rest of the pool.
- `exemplar`: cosine similarity of a response's v_lf to the mean of exemplar embeddings the user picks
  (rows of the run, or pasted texts encoded by the ranker): the embedding-similarity selection Ivison
  et al. (arXiv 2503.01807) found best at scale.
- `ifd`: instruction-following difficulty (Li et al., 2024), the LM's perplexity of the response given
  its instruction over its perplexity without it (exp of the NLL difference); one more LM pass.
- `imported`: `id, score` from any other tool (JSONL, JSON or CSV), keyed by the ids `score` writes.

`combine` turns a rule written as weights ("scar=1, novelty=0.5") into one value per row: the weighted
sum of each column's z-score, standardised over the cut's eligible rows that have every weighted value
(rows lacking one get NaN, which the selection rule treats as unscored), so units never matter and
`scar=1` alone orders rows as the score.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scar_core.errors import InputError, ScarError
from scar_core.formats.reader import Unreadable, read_rows

KINDS = ("length", "novelty", "exemplar", "ifd", "imported")
SCAR = "scar"                     # the weight name of the SCAR score itself
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
NOVELTY_NEIGHBOURS = 10
NOVELTY_REFERENCE = "scored rows no cleaning flag of their own leaves out"
BLEND_SCALE = "z-score over the cut's eligible rows having every weighted value"


class Blend(NamedTuple):
    """A blended score per row and what made it (Selection.blend: weights, scale, each signal's kind and settings)."""

    values: np.ndarray
    settings: dict


def check_name(name: str, taken: Sequence[str] = ()) -> str:
    """A signal's name as given, refused when it is not a short lower-case word or is already in use
    (`taken`: the run's other signal names and the table's own columns)."""
    if not NAME.match(name or ""):
        raise ScarError(f"signal name '{name}' must start with a letter and use only a-z, 0-9, '_' and '-' "
                        "(at most 64 characters)")
    if name == SCAR or name in taken:
        raise ScarError(f"a signal or column named '{name}' exists already; choose another name")
    return name


def response_tokens(tokenizer, responses: Sequence[str]) -> np.ndarray:
    """Each response's length in tokens (no special tokens added)."""
    ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    return np.array([len(i) for i in ids], dtype=np.float64)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def knn_novelty(vectors: np.ndarray, k: int = NOVELTY_NEIGHBOURS, reference: np.ndarray | None = None) -> np.ndarray:
    """Mean cosine distance of each row to its `k` nearest other rows among the `reference` rows (default:
    all; fewer neighbours when there are fewer). The app and `rank` take as reference the scored rows no
    cleaning flag of their own leaves out, so both give every row the same neighbours."""
    from sklearn.neighbors import NearestNeighbors

    vectors = np.asarray(vectors, dtype=np.float64)
    reference = np.ones(len(vectors), bool) if reference is None else np.asarray(reference, bool)
    if vectors.ndim != 2 or reference.sum() < 2:
        raise ScarError(f"kNN novelty needs at least 2 embedded rows, got {int(reference.sum())}")
    if k < 1:
        raise ScarError(f"kNN novelty needs k >= 1, got {k}")
    k = neighbours_used(k, reference)
    model = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(vectors[reference])
    distances, _ = model.kneighbors(vectors)
    # a reference row finds itself first (distance 0; an exact copy gives the same 0): skip one neighbour
    return np.where(reference, distances[:, 1:].mean(axis=1), distances[:, :k].mean(axis=1))


def neighbours_used(k: int, reference: np.ndarray) -> int:
    """The k knn_novelty uses: fewer when the reference holds fewer other rows."""
    return max(1, min(int(k), int(np.asarray(reference, bool).sum()) - 1))


def novelty_settings(k: int, reference: np.ndarray) -> dict:
    """What a kNN novelty signal records, alike from the app and `rank`: the k it used, the embedding,
    metric and neighbours."""
    return {"k": neighbours_used(k, reference), "embedding": "v_lf", "metric": "cosine",
            "neighbours": NOVELTY_REFERENCE}


def length_settings(encoder: str) -> dict:
    """What a length signal records, alike from the app and `rank`: tokens of the ranker's tokenizer."""
    return {"unit": "tokens", "tokenizer": encoder}


def exemplar_similarity(vectors: np.ndarray, exemplars: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to the mean of the unit-length `exemplars` (both N x H)."""
    exemplars = np.asarray(exemplars, dtype=np.float64)
    if exemplars.ndim != 2 or not len(exemplars):
        raise ScarError("pick at least one exemplar (rows of the run or pasted examples)")
    centre = _unit(exemplars).mean(axis=0)
    norm = np.linalg.norm(centre)
    if norm == 0:
        raise ScarError("the exemplars' embeddings cancel out; pick other exemplars")
    return _unit(vectors) @ (centre / norm)


def ifd(conditional_nll: np.ndarray, unconditional_nll: np.ndarray) -> np.ndarray:
    """Instruction-following difficulty from the mean response NLL with and without the instruction:
    PPL(response | instruction) / PPL(response)."""
    return np.exp(np.asarray(conditional_nll, np.float64) - np.asarray(unconditional_nll, np.float64))


def read_scores(path: str | Path) -> dict[str, float]:
    """{id: score} from a JSONL, JSON or CSV file of rows with `id` and `score` (other fields ignored).
    Refuses, naming the file, the line and the field: an unreadable row, a missing or empty id, a score
    that is not a finite number, an id given twice, and a file without rows."""
    path = Path(path)
    if not path.is_file():
        raise ScarError(f"{path}: no such file")
    found: dict[str, float] = {}
    for where, row in read_rows(path, header_fits=lambda header: True):
        if isinstance(row, Unreadable):
            raise InputError(str(path), row.reason, where, row.field)
        if not isinstance(row, dict):
            raise InputError(str(path), "each row must be an object with 'id' and 'score'", where)
        key = row.get("id")
        if key is None or str(key).strip() == "":
            raise InputError(str(path), "missing (every row needs the id `score` wrote for it)", where, "id")
        key = str(key).strip()
        try:
            value = float(row.get("score")) if row.get("score") not in (None, "") else math.nan
        except (TypeError, ValueError):
            raise InputError(str(path), f"not a number: {str(row.get('score'))[:40]!r}", where, "score") from None
        if not math.isfinite(value):
            raise InputError(str(path), "missing or not a finite number", where, "score")
        if key in found:
            raise InputError(str(path), f"id '{key}' appears twice", where, "id")
        found[key] = value
    if not found:
        raise InputError(str(path), "no rows with an id and a score")
    return found


def parse_weights(text: str) -> dict[str, float]:
    """{name: weight} from "scar=1, novelty=0.5" (spaces optional; a bare name weighs 1)."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if value.strip() else 1.0
        except ValueError:
            raise ScarError(f"weight of '{name}' is not a number: '{value.strip()}' (write name=number)") from None
        if not name or not math.isfinite(weight):
            raise ScarError(f"cannot read the weight '{part}' (write name=number, e.g. scar=1, novelty=0.5)")
        if name in weights:
            raise ScarError(f"'{name}' is weighted twice")
        weights[name] = weight
    if not weights or not any(weights.values()):
        raise ScarError("give at least one non-zero weight, e.g. scar=1, novelty=0.5")
    return weights


def blend_record(weights: dict[str, float], made: dict[str, dict]) -> dict:
    """What a blended cut records (Selection.blend), alike from the app and `rank`: the weights, the
    scale, and each weighted signal's kind and settings (`made`: {name: {"kind", "settings"}})."""
    return {"weights": weights, "scale": BLEND_SCALE, "signals": {n: made[n] for n in weights if n in made}}


def combine(columns: dict[str, np.ndarray], weights: dict[str, float], pool: np.ndarray | None = None) -> np.ndarray:
    """The weighted sum of each weighted column's z-score (module docstring); NaN where a row lacks one.
    The z-scores' mean and spread come from the `pool` rows (a cut's eligible rows; default: all) that
    have every weighted value, so the app and `rank` blend alike whichever rows cleaning left out."""
    unknown = sorted(set(weights) - set(columns))
    if unknown:
        raise ScarError(f"no signal named {', '.join(repr(u) for u in unknown)}; "
                        f"known: {', '.join(sorted(columns)) or 'none'}")
    used = {name: np.asarray(columns[name], np.float64) for name, w in weights.items() if w}
    present = np.logical_and.reduce([~np.isnan(v) for v in used.values()])
    basis = present if pool is None else present & np.asarray(pool, bool)
    basis = basis if basis.any() else present
    out = np.zeros(len(present))
    for name, values in used.items():
        spread = values[basis].std() if basis.any() else 0.0
        z = (values - values[basis].mean()) / spread if spread > 0 else np.zeros_like(values)
        out += weights[name] * z
    out[~present] = np.nan
    return out


def imported_values(path: str | Path, row_ids: Sequence[str], shown: str | None = None) -> np.ndarray:
    """Per row of a pool (its `row_ids`, the ids `score` writes; exact copies share one), its score from
    an imported file (read_scores). Refuses an id of no row, naming the line, and rows without a score;
    messages name the file as `shown` (default: its path)."""
    path = Path(path)
    shown = shown or str(path)
    try:
        found = read_scores(path)
    except ScarError as e:
        raise ScarError(str(e).replace(str(path), shown, 1)) from None
    known = set(row_ids)
    unknown = [key for key in found if key not in known]
    if unknown:
        where = _line_of(path, unknown[0])
        raise ScarError(f"{shown}{', ' + where if where else ''}: field 'id': '{unknown[0]}' is not an example of "
                        f"this pool ({len(unknown)} unknown id{'s' if len(unknown) != 1 else ''}); use the ids "
                        "`python -m scar_core score` writes. Nothing was stored.")
    missing = [key for key in dict.fromkeys(row_ids) if key not in found]
    if missing:
        raise ScarError(f"{shown}: {len(missing)} of the pool's {len(known)} scored examples have no score "
                        f"(first missing id: '{missing[0]}'); every example needs one. Nothing was stored.")
    return np.array([found[key] for key in row_ids], dtype=np.float64)


def _line_of(path: Path, key: str) -> str | None:
    """Where an id appears in the file ("line N"), for a message; None when not found as text."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if key in line:
                return f"line {number}"
    return None
