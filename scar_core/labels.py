"""Annotator labels: the labels file of the CLI's `rank --labels` (one row per example with `id`, the
example's content id as `score` writes it, and `label`, keep, drop or flag, in any format the loader
reads: .jsonl, .json, .csv, .parquet), agreement between annotators, and an annotator's review queue."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
import hashlib
import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from scar_core.errors import InputError, ScarError
from scar_core.formats.reader import Unreadable, read_rows

LABELS = ("keep", "drop", "flag")


LEAD = "lead"  # the annotator column's value in a labels file for a lead's adjudication


@dataclass(frozen=True)
class Verdict:
    """One person's current label on one example: `key` is an example id in the store, the content id
    in a labels file; `adjudication` marks a lead's decision, which the policy puts first."""

    key: object
    annotator: str
    label: str
    adjudication: bool = False


def read_labels(path: str | Path) -> list[Verdict]:
    """The verdicts of a labels file: rows with `id` (the content id `score` writes), `label` (keep, drop
    or flag) and optionally `annotator` (default "file") and `adjudication` (true: a lead's decision).
    A later row for the same id and annotator (or, for adjudications, the same id) replaces an earlier one. Bad rows are refused with the
    file, the row and the field."""
    out: dict[tuple[str, str, bool], Verdict] = {}
    for where, row in read_rows(Path(path), header_fits=lambda header: "id" in header):
        if isinstance(row, Unreadable):
            raise InputError(str(path), row.reason, where, row.field)
        if not isinstance(row, dict):
            raise InputError(str(path), "expected an object with 'id' and 'label'", where)
        for name in ("id", "label"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise InputError(str(path), "expected text", where, name)
        if row["label"] not in LABELS:
            raise InputError(str(path), f"expected one of {', '.join(LABELS)}, got {row['label']!r}", where, "label")
        annotator = row.get("annotator", "file")
        if not isinstance(annotator, str) or not annotator.strip():
            raise InputError(str(path), "expected an annotator's name", where, "annotator")
        adjudication = row.get("adjudication", False)
        if isinstance(adjudication, str) and adjudication.strip().lower() in ("true", "false", "1", "0", ""):
            adjudication = adjudication.strip().lower() in ("true", "1")  # CSV cells are text
        if not isinstance(adjudication, bool):
            raise InputError(str(path), f"expected true or false, got {adjudication!r}", where, "adjudication")
        verdict = Verdict(row["id"].strip(), annotator.strip(), row["label"], adjudication)
        out[(verdict.key, LEAD if adjudication else verdict.annotator, adjudication)] = verdict  # one decision a row
    return list(out.values())


POLICIES = {
    "lead-then-majority": "a lead's adjudication first; else the label most annotators gave; a tie stays unresolved",
    "lead-then-unanimous": "a lead's adjudication first; else the label every annotator gave; any disagreement "
                           "stays unresolved",
}
DEFAULT_POLICY = "lead-then-majority"
STEPS = ("adjudicated", "unanimous", "majority", "unresolved")
STEP_WORDS = {"adjudicated": "by a lead", "unanimous": "unanimously", "majority": "by majority"}


def steps_in_words(rows: dict[str, int]) -> str:
    """A policy's rows per step as a sentence: "5 rows decided unanimously, 1 by a lead; 2 where
    annotators disagree stay unresolved (no override)"."""
    decided = [f"{n} {STEP_WORDS[step]}" for step, n in rows.items() if n and step != "unresolved"]
    text = ("rows decided " + ", ".join(decided)) if decided else "no rows labelled"
    if rows.get("unresolved"):
        text += f"; {rows['unresolved']} rows where annotators disagree stay unresolved (no override)"
    return text


@dataclass
class Resolution:
    """What a label policy made of the verdicts: `decided` {key: label} for the rows it settled, `step`
    {key: which step decided it or "unresolved"}, `votes` {key: {label: count}} of the annotators."""

    policy: str
    decided: dict
    step: dict
    votes: dict
    verdicts_sha256: str  # of the verdicts it came from, keyed by content id: the same from the CLI and the app

    def counts(self) -> dict[str, int]:
        """Rows each policy step decided, and rows left unresolved."""
        out = dict.fromkeys(STEPS, 0)
        for step in self.step.values():
            out[step] += 1
        return out

    def summary(self, key) -> str:
        """How the row's label reads in a table: "keep", "2 keep / 1 drop", "→ drop (lead; 1 keep / 1 drop)",
        "" when nobody labelled it."""
        votes = self.votes.get(key, {})
        tally = " / ".join(f"{n} {label}" for label, n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])))
        if self.step.get(key) == "adjudicated":
            return f"→ {self.decided[key]} (lead" + (f"; {tally})" if tally else ")")
        if len(votes) == 1:
            return next(iter(votes))
        return tally


def resolve(verdicts: Iterable[Verdict], policy: str = DEFAULT_POLICY, content_id: dict | None = None) -> Resolution:
    """Apply a named policy to current verdicts, one per (key, annotator) and one adjudication per key.
    `content_id` maps the keys to content ids for the hash where they are not content ids already."""
    if policy not in POLICIES:
        raise ScarError(f"unknown label policy '{policy}'; choose one of {', '.join(POLICIES)}")
    verdicts = list(verdicts)
    votes: dict = {}
    adjudicated: dict = {}
    for v in verdicts:
        if v.adjudication:
            adjudicated[v.key] = v.label
        else:
            votes.setdefault(v.key, {}).setdefault(v.label, 0)
            votes[v.key][v.label] += 1
    decided, step = {}, {}
    for key in {*votes, *adjudicated}:
        if key in adjudicated:
            decided[key], step[key] = adjudicated[key], "adjudicated"
            continue
        ranked = sorted(votes[key].items(), key=lambda kv: -kv[1])
        if len(ranked) == 1:
            decided[key], step[key] = ranked[0][0], "unanimous"
        elif policy == "lead-then-majority" and ranked[0][1] > ranked[1][1]:
            decided[key], step[key] = ranked[0][0], "majority"
        else:
            step[key] = "unresolved"
    canonical = sorted([str(content_id[v.key] if content_id else v.key), LEAD if v.adjudication else v.annotator,
                        v.label] for v in verdicts)
    return Resolution(policy, decided, step, votes, hashlib.sha256(json.dumps(canonical).encode()).hexdigest())


def label_summary(resolution: Resolution | None) -> dict | None:
    """A selection's `labels` entry (in its manifest): the policy, the rows each step decided and those
    left unresolved, and the hash of the verdicts; the same from the CLI and the app."""
    if resolution is None:
        return None
    return {"policy": resolution.policy, "rule": POLICIES[resolution.policy], "rows": resolution.counts(),
            "verdicts_sha256": resolution.verdicts_sha256}


@dataclass(frozen=True)
class PairAgreement:
    """How two annotators agree on the examples both labelled."""

    first: str
    second: str
    shared: int          # examples both labelled
    agreement: float     # share of those with the same label
    kappa: float | None  # Cohen's kappa; None when it is undefined (both always gave one and the same label)


def agreement(labelled: Iterable[tuple[int, str, str]]) -> list[PairAgreement]:
    """Raw agreement and Cohen's kappa (scikit-learn) for every pair of annotators who labelled at least
    one example in common, from (example id, annotator, label) rows; pairs sharing most examples first."""
    from sklearn.metrics import cohen_kappa_score

    by_annotator: dict[str, dict[int, str]] = {}
    for example_id, annotator, label in labelled:
        by_annotator.setdefault(annotator, {})[int(example_id)] = label
    out = []
    for first, second in combinations(sorted(by_annotator), 2):
        a, b = by_annotator[first], by_annotator[second]
        shared = sorted(a.keys() & b.keys())
        if not shared:
            continue
        x, y = [a[i] for i in shared], [b[i] for i in shared]
        same = sum(p == q for p, q in zip(x, y)) / len(shared)
        kappa = None
        if len(set(x) | set(y)) > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                value = float(cohen_kappa_score(x, y, labels=list(LABELS)))
            kappa = value if np.isfinite(value) else None
        out.append(PairAgreement(first, second, len(shared), same, kappa))
    return sorted(out, key=lambda p: (-p.shared, p.first, p.second))


QUEUE_ORDERS = ("best", "random")


def review_queue(ids_best_first: Sequence[int], done: Collection[int], order: str = "best",
                 seed: int = 0) -> list[int]:
    """An annotator's review queue: the examples (given best first) they have not labelled yet, best first
    or in a seeded random order. The random order is drawn over all the ids before the labelled ones are
    left out, so labelling one leaves the rest of the queue in place."""
    if order not in QUEUE_ORDERS:
        raise ScarError(f"unknown queue order '{order}'; choose best or random")
    ids = [int(i) for i in ids_best_first]
    if order == "random":
        ids = [ids[k] for k in np.random.default_rng(seed).permutation(len(ids))]
    done = set(done)
    return [i for i in ids if i not in done]
