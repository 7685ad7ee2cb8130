"""Labelling a run: the actions a person takes on labels (a verdict, a bulk verdict, a lead's
adjudication, undo), the label policy that turns everyone's verdicts into one label per example, and
the labels file the CLI's `rank --labels` reads. Used by the Explore page, the Select and Export
pages and the CLI alike; the history itself lives in db.labels."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from db import labels
from db.store import Store
from scar_core.errors import ScarError
from scar_core.jobs import access
from scar_core.labels import DEFAULT_POLICY, LEAD, Resolution, Verdict, resolve


def label(store: Store, run_id: int, example_ids: Sequence[int], verdict: str, annotator: str,
          note: str | None = None) -> str:
    """Give these examples this annotator's verdict (one action, one transaction); says how many changed."""
    annotator = _name(annotator)
    access.require(store, "label", run_id=run_id, person=annotator)
    what = f"labelled {_examples(example_ids)} {verdict}"
    done = labels.record(store, run_id, annotator, example_ids, verdict, note, description=what)
    return _said(what, done)


def adjudicate(store: Store, run_id: int, example_ids: Sequence[int], verdict: str, lead: str,
               note: str | None = None) -> str:
    """A lead's decision on examples whose annotators disagree; the label policy puts it first."""
    lead = _name(lead)
    access.require(store, "adjudicate", run_id=run_id, person=lead)
    what = f"decided {_examples(example_ids)} {verdict} as lead"
    done = labels.record(store, run_id, lead, example_ids, verdict, note, description=what, adjudicate=True)
    return _said(what, done)


def undo_offer(store: Store, run_id: int, annotator: str) -> str | None:
    """What Undo would revert for this annotator on this run ("labelled 5 examples drop"), or None."""
    action = labels.last_action(store, run_id, annotator) if annotator else None
    return action.description if action else None


def undo(store: Store, run_id: int, annotator: str) -> str:
    """Revert this annotator's own latest action on this run (never another person's, never another
    run's) with a new action; says exactly what it reverted."""
    done = labels.undo(store, run_id, access.require(store, "label", run_id=run_id, person=_name(annotator)))
    if done is None:
        return "Nothing of yours to undo on this run."
    text = f"Undone: {done.action.description.removeprefix('undid: ')} ({done.action.count} reverted"
    if done.unchanged:
        text += f"; {done.unchanged} left as they are, changed again since"
    return text + ")."


def resolution(store: Store, run_id: int, policy: str = DEFAULT_POLICY) -> Resolution:
    """Everyone's current verdicts on the run's examples through the label policy; keyed by example id."""
    rows = labels.run_verdicts(store, run_id)
    return resolve([Verdict(example_id, who, verdict, adjudication) for example_id, _, who, verdict, adjudication in rows],
                   policy, content_id={example_id: content for example_id, content, *_ in rows})


def event_digest(store: Store, run_id: int) -> dict:
    """The label events a selection saw: the latest event id and a hash of every event on the run's
    examples (kept with a saved selection; its manifest names them)."""
    events = labels.run_events(store, run_id)
    return {"last_event_id": events[-1][0] if events else 0, "events_sha256": hashlib.sha256(json.dumps(events).encode()).hexdigest(),
            "events": len(events)}


def labels_file(store: Store, run_id: int) -> bytes:
    """Every current verdict and adjudication on the run as JSON lines for `rank --labels`: id (the
    content id), annotator, label, adjudication."""
    rows = sorted(labels.run_verdicts(store, run_id), key=lambda r: (r[1], r[4], r[2]))
    return "".join(json.dumps({"id": content, "annotator": LEAD if adjudication else who, "label": verdict,
                               "adjudication": adjudication}) + "\n"
                   for _, content, who, verdict, adjudication in rows).encode("utf-8")


def labelled_by(store: Store, run_id: int, annotator: str) -> set[int]:
    """The run's examples this annotator has a verdict on (the review queue leaves them out)."""
    return labels.labelled_by(store, run_id, annotator)


def already(annotations: Sequence[tuple[int, str, str]], annotator: str, example_ids: Sequence[int],
            verdict: str) -> int:
    """How many of these examples carry this annotator's `verdict` already (a bulk action leaves them),
    from the run's `annotations`."""
    wanted = set(int(i) for i in example_ids)
    return sum(1 for example_id, who, given in annotations
               if who == annotator and given == verdict and example_id in wanted)


def annotations(store: Store, run_id: int) -> list[tuple[int, str, str]]:
    """(example id, annotator, label) of every current verdict on the run (agreement between annotators)."""
    return labels.run_annotations(store, run_id)


def verdicts_on(store: Store, example_id: int) -> list:
    """Every annotator's current verdict on one example, newest first."""
    return labels.labels_for(store, [example_id])


def history(store: Store, example_id: int) -> list[dict]:
    """One example's label history, newest first: when, who, what changed, and the action it was part of."""
    return [{"when": event.created_at, "who": event.annotator,
             "what": ("decision" if event.kind == "adjudication" else "verdict") + ": "
                     + f"{event.previous_label or '—'} → {event.label or '—'}",
             "note": event.note, "action": action.description}
            for event, action in labels.history(store, example_id)]


LABEL_FILTERS = ("keep", "drop", "flag", "conflict", "none")


def label_filter(decided: Resolution, choice: str, run_ids: Sequence[int]) -> list[int]:
    """The run's example ids matching the Label filter: the label the policy decided (keep, drop, flag),
    "conflict" (annotators disagree and no step of the policy settled it) or "none" (no verdict yet)."""
    if choice not in LABEL_FILTERS:
        raise ScarError(f"unknown label filter '{choice}'; choose one of {', '.join(LABEL_FILTERS)}")
    if choice == "none":
        return [int(i) for i in run_ids if i not in decided.step]
    if choice == "conflict":
        return sorted(k for k, step in decided.step.items() if step == "unresolved")
    return sorted(k for k, verdict in decided.decided.items() if verdict == choice)


def _examples(example_ids: Sequence[int]) -> str:
    n = len(set(example_ids))
    return f"{n} example{'s' if n != 1 else ''}"


def _name(annotator: str) -> str:
    if not annotator or not annotator.strip():
        raise ScarError("Set your name in the sidebar first: labels are kept per annotator.")
    return annotator.strip()


def _said(what: str, done: labels.Done) -> str:
    text = f"Saved: {what}"
    if done.unchanged:
        text += f" ({done.action.count} changed, {done.unchanged} already so)"
    return text + "."
