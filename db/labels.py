"""Labels as an append-only history. Every change of a verdict (an annotator's keep/drop/flag on an
example, or a lead's adjudication) is a LabelEvent of a LabelAction (one key, one bulk action, one
undo: who, on which run, what, how many). The current verdicts (`labels`) and adjudications are
derived from the events in the same transaction, so a reader never sees half an action.

Undo is an action of its own that reverts the annotator's latest action on one run that is not undone
yet; examples whose verdict is no longer the one that action gave (changed since by that annotator's
later action) are left as they are and counted. Nothing is deleted from the history."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text

from db.models import Adjudication, Example, Label, LabelAction, LabelEvent, Result, utcnow
from db.store import Store
from scar_core.errors import ScarError
from scar_core.labels import LABELS

ACTION_KINDS = ("label", "bulk", "adjudicate", "undo", "import")
CHUNK = 5000


@dataclass(frozen=True)
class Done:
    """What one action did: its stored row, and how many examples it left unchanged (already so, or
    changed since by a later action: an undo leaves those)."""

    action: LabelAction
    unchanged: int


def _check(label: str, annotator: str) -> None:
    if label not in LABELS:
        raise ScarError(f"unknown label '{label}'; choose keep, drop or flag")
    if not annotator or not annotator.strip():
        raise ScarError("a label needs an annotator name")


def _serialise(session, key: str) -> None:
    """On PostgreSQL, a transaction-scoped advisory lock on `key`: one person's actions (two tabs, two
    app servers) and all adjudications (one per example, whoever the lead) then run one after another,
    each reading the current rows after the one before committed. Without it two tabs read the same
    rows, write events with a stale previous verdict, collide on the unique key and undo one action
    twice (bench/label_concurrency.py found all four). Callers take the person's lock before the
    adjudications' lock, so two actions never wait on each other. SQLite needs none: BEGIN IMMEDIATE
    already makes writers take turns."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"scar-labels:{key}".encode()).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest[:8], "big", signed=True)})


def _current(session, model, who, example_ids: list[int]) -> dict[int, object]:
    """{example id: current row} of an annotator's verdicts (Label) or of adjudications (who None)."""
    out = {}
    for lo in range(0, len(example_ids), CHUNK):
        query = select(model).where(model.example_id.in_(example_ids[lo:lo + CHUNK]))
        if model is Label:
            query = query.where(Label.annotator == who)
        out.update({row.example_id: row for row in session.scalars(query)})
    return out


def _apply(session, action: LabelAction, kind: str, changes: list[tuple[int, str | None, str | None]],
           current: dict[int, object]) -> int:
    """Write one event per change (example id, new label or None, note) and update the derived rows;
    the events go in as one batched insert."""
    model = Label if kind == "verdict" else Adjudication
    now = action.created_at
    events = [LabelEvent(action_id=action.id, example_id=example_id, annotator=action.annotator, kind=kind,
                         label=label, note=note, previous_label=getattr(current.get(example_id), "label", None),
                         previous_note=getattr(current.get(example_id), "note", None), created_at=now)
              for example_id, label, note in changes]
    session.add_all(events)
    session.flush()
    who = {"annotator": action.annotator} if model is Label else {"lead": action.annotator}
    for event in events:
        row = current.get(event.example_id)
        if event.label is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(model(example_id=event.example_id, label=event.label, note=event.note, created_at=now,
                              event_id=event.id, **who))
        else:
            row.label, row.note, row.created_at, row.event_id = event.label, event.note, now, event.id
    return len(events)


def record(store: Store, run_id: int | None, annotator: str, example_ids: Sequence[int], label: str,
           note: str | None = None, *, description: str, adjudicate: bool = False) -> Done:
    """Give these examples this verdict (an annotator's, or with `adjudicate` a lead's decision) as one
    action, in one transaction. Examples already holding exactly this verdict and note are left alone
    and counted as unchanged; a bulk action without a note keeps each example's own note and leaves
    alone those holding this verdict already. The action's `count` is what changed."""
    _check(label, annotator)
    ids = sorted({int(i) for i in example_ids})  # one order for every writer: no deadlock between bulk actions
    bulk_keeps_notes = len(ids) > 1 and note is None
    kind = "adjudication" if adjudicate else "verdict"

    def work(session) -> Done:
        _serialise(session, f"person:{annotator}")
        if adjudicate:
            _serialise(session, "adjudications")
        action = LabelAction(run_id=run_id, annotator=annotator, kind="adjudicate" if adjudicate else
                             ("label" if len(ids) == 1 else "bulk"), label=label, description=description,
                             count=0, created_at=utcnow())
        session.add(action)
        session.flush()
        current = _current(session, Adjudication if adjudicate else Label, annotator, ids)
        if bulk_keeps_notes:
            todo = [(i, label, getattr(current.get(i), "note", None)) for i in ids
                    if getattr(current.get(i), "label", None) != label]
        else:
            todo = [(i, label, note) for i in ids
                    if not (i in current and current[i].label == label and current[i].note == note)]
        action.count = _apply(session, action, kind, todo, current)
        return Done(action, len(ids) - len(todo))
    return store.transact(work)


def _last_action(session, run_id: int, annotator: str) -> LabelAction | None:
    undone = select(LabelAction.undoes).where(LabelAction.undoes.is_not(None))
    return session.scalar(select(LabelAction).where(
        LabelAction.run_id == run_id, LabelAction.annotator == annotator,
        LabelAction.kind.in_(("label", "bulk", "adjudicate")), LabelAction.count > 0,
        LabelAction.id.not_in(undone)).order_by(LabelAction.id.desc()).limit(1))


def last_action(store: Store, run_id: int, annotator: str) -> LabelAction | None:
    """The annotator's latest action on this run that changed something and is not undone yet (what
    Undo would revert)."""
    with store.read() as s:
        return _last_action(s, run_id, annotator)


def undo(store: Store, run_id: int, annotator: str) -> Done | None:
    """Revert this annotator's latest action on this run (last_action) with a new action: each example
    it changed gets back the verdict it had before, unless it no longer holds the verdict that action
    gave. None when there is nothing to undo."""
    def work(session) -> Done | None:
        _serialise(session, f"person:{annotator}")
        target = _last_action(session, run_id, annotator)  # looked up under the lock: never undone twice
        if target is None:
            return None
        if target.kind == "adjudicate":
            _serialise(session, "adjudications")
        events = list(session.scalars(select(LabelEvent).where(LabelEvent.action_id == target.id)
                                      .order_by(LabelEvent.id)))
        kind, model = ("adjudication", Adjudication) if target.kind == "adjudicate" else ("verdict", Label)
        current = _current(session, model, annotator, [e.example_id for e in events])
        todo = [(e.example_id, e.previous_label, e.previous_note) for e in events
                if (getattr(current.get(e.example_id), "label", None), getattr(current.get(e.example_id), "note", None))
                == (e.label, e.note)]
        action = LabelAction(run_id=run_id, annotator=annotator, kind="undo", label=None, undoes=target.id,
                             description=f"undid: {target.description}", count=0, created_at=utcnow())
        session.add(action)
        session.flush()
        action.count = _apply(session, action, kind, todo, current)
        return Done(action, len(events) - len(todo))
    return store.transact(work)


def labels_for(store: Store, example_ids: Sequence[int]) -> list[Label]:
    """All annotators' current verdicts on these examples, newest first."""
    ids = [int(i) for i in example_ids]
    with store.read() as s:
        return list(s.scalars(select(Label).where(Label.example_id.in_(ids))
                              .order_by(Label.created_at.desc(), Label.id.desc())))


def history(store: Store, example_id: int) -> list[tuple[LabelEvent, LabelAction]]:
    """Every event on one example, newest first, with the action each belongs to."""
    query = (select(LabelEvent, LabelAction).join(LabelAction, LabelAction.id == LabelEvent.action_id)
             .where(LabelEvent.example_id == example_id).order_by(LabelEvent.id.desc()))
    with store.read() as s:
        return [tuple(row) for row in s.execute(query)]


def run_annotations(store: Store, run_id: int) -> list[tuple[int, str, str]]:
    """(example id, annotator, label) of every current verdict on the run's examples."""
    query = (select(Label.example_id, Label.annotator, Label.label)
             .join(Result, Result.example_id == Label.example_id).where(Result.run_id == run_id)
             .order_by(Label.example_id, Label.annotator))
    with store.read() as s:
        return [tuple(row) for row in s.execute(query)]


def run_verdicts(store: Store, run_id: int) -> list[tuple[int, str, str, str, bool]]:
    """(example id, content id, annotator or lead, label, is an adjudication) of every current verdict
    and adjudication on the run's examples."""
    verdicts = (select(Label.example_id, Example.content_id, Label.annotator, Label.label)
                .join(Example, Example.id == Label.example_id)
                .join(Result, Result.example_id == Label.example_id).where(Result.run_id == run_id))
    decisions = (select(Adjudication.example_id, Example.content_id, Adjudication.lead, Adjudication.label)
                 .join(Example, Example.id == Adjudication.example_id)
                 .join(Result, Result.example_id == Adjudication.example_id).where(Result.run_id == run_id))
    with store.read() as s:
        return ([(*row, False) for row in s.execute(verdicts)] + [(*row, True) for row in s.execute(decisions)])


def run_events(store: Store, run_id: int) -> list[tuple]:
    """(event id, content id, annotator, kind, label) of every event on the run's examples, oldest
    first: what the manifest's hash of the label events is made from."""
    query = (select(LabelEvent.id, Example.content_id, LabelEvent.annotator, LabelEvent.kind, LabelEvent.label)
             .join(Example, Example.id == LabelEvent.example_id)
             .join(Result, Result.example_id == LabelEvent.example_id)
             .where(Result.run_id == run_id).order_by(LabelEvent.id))
    with store.read() as s:
        return [tuple(row) for row in s.execute(query)]


def labelled_by(store: Store, run_id: int, annotator: str) -> set[int]:
    """Ids of the run's examples this annotator has a current verdict on."""
    query = (select(Label.example_id).join(Result, Result.example_id == Label.example_id)
             .where(Result.run_id == run_id, Label.annotator == annotator))
    with store.read() as s:
        return set(s.scalars(query))


def count_events(store: Store) -> int:
    """How many label events the store holds (the concurrency bench checks none was lost)."""
    with store.read() as s:
        return int(s.scalar(select(func.count(LabelEvent.id))))
