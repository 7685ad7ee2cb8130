"""The per-example diagnostics table: one set of keys wherever a scored pair's figures appear.

`python -m scar_core score` writes these figures on each JSON line, the scoring job stores them with
each result, Explore shows them and `diagnose` builds its report from them; all take them from here.
Columns, in this order (COLUMNS):

- score: the ranker's score of the pair;
- its parts (PARTS, named in words in PART_LABELS), which add up to the score exactly:
  baseline, the score of the data set's average pair (the same for every row);
  lf_contribution and is_contribution, the Shapley split of the SCAR head's score around that
  baseline between linguistic form and instructional surprisal (scar_core.diagnostics.breakdown);
  lm_contribution, the LM term's own value, for a ranker with one (0 for a response of average NLL);
- lm_nll: the NLL the LM term scored with (None where too little of the response is its own text);
- lf_outlier, is_outlier: distance from the data set's centre in each space (diagnostics.outliers);
- the form features (diagnostics.features.FEATURES).

The figures fall in two groups by what they need. `pair_figures` needs only the pairs themselves, so
the scoring job stores them chunk by chunk; `run_figures` needs the whole data set (its means and
centre), so the job adds them once every row is in. `example_table` computes both for data in memory.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scar_core.diagnostics.breakdown import breakdown
from scar_core.diagnostics.features import FEATURES, features_frame
from scar_core.diagnostics.outliers import style_outliers
from scar_core.ranker import StyleRanker
from scar_core.score import Scores

PARTS = ("baseline", "lf_contribution", "is_contribution", "lm_contribution")
PART_LABELS = {
    "baseline": "Starting point (this data set's average pair)",
    "lf_contribution": "How the response is written (form)",
    "is_contribution": "How it answers the instruction (surprisal)",
    "lm_contribution": "How predictable a language model finds it (LM term)",
}
COLUMNS = ("score", *PARTS, "lm_nll", "lf_outlier", "is_outlier", *FEATURES)
# A part "carries nearly all of the ranking" when its mean |value| is at least this share of the
# mean |value| of all varying parts together (the baseline, the same for every row, left out).
DOMINANT_SHARE = 0.8


def pair_figures(responses: Sequence[str], scores: Scores) -> pd.DataFrame:
    """The figures each pair has on its own, in the order of `scores`: the form features and, for a
    ranker with an LM term, lm_contribution and lm_nll."""
    table = features_frame(responses)
    if scores.lm_part is not None:
        table.insert(0, "lm_nll", np.asarray(scores.lm_nll, np.float64))
        table.insert(0, "lm_contribution", np.asarray(scores.lm_part, np.float64))
    return table


def run_figures(ranker: StyleRanker, v_is: np.ndarray, v_lf: np.ndarray, head_score: np.ndarray) -> pd.DataFrame:
    """The figures measured against the whole data set: baseline, lf_contribution, is_contribution
    (which add up to `head_score`, the score without any LM term) and the outlier distances."""
    parts = breakdown(ranker, v_is, v_lf, head_score=head_score)
    lf_out, is_out = style_outliers(v_lf, v_is)
    return pd.DataFrame({"baseline": np.full(len(parts.score), parts.baseline),
                         "lf_contribution": parts.lf_contribution, "is_contribution": parts.is_contribution,
                         "lf_outlier": lf_out, "is_outlier": is_out})


def head_score(score: np.ndarray, lm_contribution: np.ndarray | None) -> np.ndarray:
    """The SCAR head's share of each score: the score less the LM term's part (a missing part counts 0)."""
    score = np.asarray(score, np.float64)
    if lm_contribution is None:
        return score
    return score - np.nan_to_num(np.asarray(lm_contribution, np.float64))


def example_table(ranker: StyleRanker, scores: Scores, responses: Sequence[str]) -> pd.DataFrame:
    """Every per-example figure of scored pairs in memory, one row per pair in input order, in COLUMNS order."""
    pair = pair_figures(responses, scores)
    run = run_figures(ranker, scores.v_is, scores.v_lf, head_score(scores.score, scores.lm_part))
    table = pd.concat([pd.DataFrame({"score": scores.score.astype(np.float64)}), run, pair], axis=1)
    return table[[c for c in COLUMNS if c in table]]


def ordered(figures: Mapping[str, object]) -> dict:
    """One example's figures in COLUMNS order (any others after them), with NaN as None (JSON-safe)."""
    keys = [c for c in COLUMNS if c in figures] + [k for k in figures if k not in COLUMNS]
    return {k: _json_safe(figures[k]) for k in keys}


def records(table: pd.DataFrame) -> list[dict]:
    """A table's rows as JSON-safe dicts in COLUMNS order."""
    return [ordered(row) for row in table.to_dict("records")]


def _json_safe(value: object) -> object:
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def score_parts(figures: Mapping[str, object]) -> dict[str, float]:
    """One example's score parts in PARTS order (lm_contribution only for a ranker with an LM term), or
    {} while its form and surprisal parts are not yet computed. Results stored before the baseline was
    kept get it as the score less the other parts."""
    parts = {k: float(figures[k]) for k in PARTS if figures.get(k) is not None}
    if not {"lf_contribution", "is_contribution"} <= set(parts):
        return {}
    parts.setdefault("baseline", float(figures["score"]) - sum(parts.values()))
    return {k: parts[k] for k in PARTS if k in parts}


def parts_equation(parts: Mapping[str, float], score: float) -> str:
    """The score as the sum of its parts, e.g. "0.2360 + 0.1037 − 0.0120 = 0.3277"."""
    values = list(parts.values())
    if not values:
        return f"{score:.4f}"
    terms = f"{values[0]:.4f}" + "".join(f" {'−' if v < 0 else '+'} {abs(v):.4f}" for v in values[1:])
    return f"{terms} = {score:.4f}"


def part_shares(parts: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each varying part's mean |value| over the rows (NaN left out) as a share of all of them together;
    {} until the form and surprisal parts are computed, or when no part varies."""
    values = {k: np.abs(np.asarray(parts[k], np.float64)) for k in PARTS[1:] if k in parts}
    sizes = {k: float(np.nanmean(v)) for k, v in values.items() if np.isfinite(v).any()}
    total = sum(sizes.values())
    if not {"lf_contribution", "is_contribution"} <= set(sizes) or total <= 0:
        return {}
    return {k: v / total for k, v in sizes.items()}


def dominant_part(parts: Mapping[str, Sequence[float]], share: float = DOMINANT_SHARE) -> tuple[str, float] | None:
    """(part, its share) when one part carries nearly all of the ranking (see DOMINANT_SHARE), else None."""
    shares = part_shares(parts)
    best = max(shares, key=shares.get, default=None)
    return (best, shares[best]) if best is not None and shares[best] >= share else None


def dominance_note(parts: Mapping[str, Sequence[float]]) -> str | None:
    """One plain sentence saying which part carries nearly all of the ranking, or None when none does."""
    found = dominant_part(parts)
    if found is None:
        return None
    name, share = found
    return (f"One part carries nearly all of the ranking here: \"{PART_LABELS[name]}\" makes up "
            f"{share:.0%} of how far scores lie from the starting point on average, so the other parts "
            "change the order little.")


# One line per figure, for the example view's diagnostics table.
MEANINGS = {
    "score": "the ranker's score; higher ranks better",
    "baseline": "the score of this data set's average pair, the same for every row",
    "lf_contribution": "how much the response's form (how it is written) moves the score",
    "is_contribution": "how much the response's fit to its instruction moves the score",
    "lm_contribution": "how much the LM term moves the score (0 for a response of average NLL)",
    "lm_nll": "nats per token a small language model needs for the response (lower: more predictable)",
    "lf_outlier": "distance from the data set's typical form (1 is average; 2-3 is unusual)",
    "is_outlier": "distance from the data set's typical instruction fit (1 is average; 2-3 is unusual)",
    "chars": "characters in the response",
    "words": "words in the response's prose",
    "sentences": "sentences in the response's prose",
    "mean_sentence_length": "words per sentence",
    "type_token_ratio": "distinct words over all words (higher: more varied vocabulary)",
    "mtld": "lexical diversity that does not shrink with length (MTLD)",
    "function_word_share": "share of words that are function words (the, of, and, ...)",
    "transitions_per_100w": "transition words (however, therefore, ...) per 100 words",
    "hedges_per_100w": "hedges (might, perhaps, I think, ...) per 100 words",
    "first_person_per_100w": "first-person words (I, me, we, ...) per 100 words",
    **{f"{name}_per_100w": f"{name} per 100 words" for name in
       ("commas", "colons", "semicolons", "questions", "exclamations", "dashes", "parentheses", "quotes")},
    "bullet_items": "bulleted list items",
    "numbered_items": "numbered list items",
    "headings": "markdown headings",
    "code_blocks": "code blocks",
    "bold_spans": "bold spans",
    "table_rows": "markdown table rows",
    "markdown_density": "share of non-blank lines inside markdown structure",
}


def against_data_set(figures: Mapping[str, object], data_set: Mapping[str, Sequence[float]],
                     digits: int = 3) -> pd.DataFrame:
    """One example's figures beside the data set's: one row per numeric figure in COLUMNS order with
    `figure`, `value` and the data set's `median` (rounded to `digits` significant digits, see _rounded), `percentile`
    (share of the data set's rows at or below this value, 0-100) and `meaning` (MEANINGS). Figures the
    data set lacks get no median or percentile."""
    rows = []
    for name, value in ordered(figures).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        column = np.asarray(data_set.get(name, ()), np.float64)
        column = column[np.isfinite(column)]
        rows.append({"figure": name, "value": _rounded(value, digits),
                     "median": _rounded(float(np.median(column)), digits) if len(column) else None,
                     "percentile": round(100.0 * float((column <= value).mean()), 1) if len(column) else None,
                     "meaning": MEANINGS.get(name, "")})
    return pd.DataFrame(rows, columns=["figure", "value", "median", "percentile", "meaning"])


def _rounded(value: float, digits: int) -> float:
    """`digits` significant digits, but whole numbers kept whole (1234.5 -> 1234, not 1230)."""
    return float(round(value)) if abs(value) >= 10 ** digits else float(f"{value:.{digits}g}")
