"""Team mode's people: who has which role, which data sets each annotator may label, and the log of
actions done or refused (who, what, when). Roles are plain names here; what each may do is
scar_core.jobs.access's rule."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.models import ActionLog, Assignment, LabelAction, Person, Run, utcnow
from db.store import Store


def get_person(store: Store, identity: str) -> Person | None:
    with store.read() as s:
        return s.scalar(select(Person).where(Person.identity == identity))


def list_people(store: Store) -> list[Person]:
    with store.read() as s:
        return list(s.scalars(select(Person).order_by(Person.identity)))


def enrol(store: Store, identity: str, role: str) -> Person:
    """The stored person under this identity, added with `role` when new (a first sign-in; when two
    sessions of one person enrol at once, the second finds the first's row)."""
    def work(session) -> Person:
        person = session.scalar(select(Person).where(Person.identity == identity))
        if person is None:
            person = Person(identity=identity, role=role, created_at=utcnow())
            session.add(person)
            session.flush()
        return person
    try:
        return store.transact(work)
    except IntegrityError:
        return get_person(store, identity)


def set_role(store: Store, identity: str, role: str) -> Person:
    """Give this identity this role (adding the person when new)."""
    def work(session) -> Person:
        person = session.scalar(select(Person).where(Person.identity == identity))
        if person is None:
            person = Person(identity=identity, role=role, created_at=utcnow())
            session.add(person)
        person.role = role
        session.flush()
        return person
    return store.transact(work)


def assign(store: Store, identity: str, dataset_id: int, assigned: bool = True) -> None:
    """Assign a data set to a person (or with `assigned` False take it back); the person must exist."""
    def work(session) -> None:
        person = session.scalar(select(Person).where(Person.identity == identity))
        row = session.scalar(select(Assignment).where(Assignment.person_id == person.id,
                                                      Assignment.dataset_id == dataset_id))
        if assigned and row is None:
            session.add(Assignment(person_id=person.id, dataset_id=dataset_id, created_at=utcnow()))
        elif not assigned and row is not None:
            session.delete(row)
    store.transact(work)


def assigned_datasets(store: Store, identity: str) -> set[int]:
    """Ids of the data sets assigned to this identity."""
    query = (select(Assignment.dataset_id).join(Person, Person.id == Assignment.person_id)
             .where(Person.identity == identity))
    with store.read() as s:
        return set(s.scalars(query))


def run_dataset(store: Store, run_id: int) -> int | None:
    """The data set a run scored (None: no such run)."""
    with store.read() as s:
        return s.scalar(select(Run.dataset_id).where(Run.id == run_id))


def log(store: Store, who: str, action: str, what: str, allowed: bool) -> None:
    """Append one entry to the action log."""
    store.transact(lambda s: s.add(ActionLog(who=who, action=action, what=what, allowed=allowed, created_at=utcnow())))


def audit(store: Store, limit: int = 1000) -> list[dict]:
    """The latest `limit` things people did, newest first, from the action log and the label actions:
    {when, who, action, what, allowed}."""
    with store.read() as s:
        logged = [{"when": e.created_at, "who": e.who, "action": e.action, "what": e.what, "allowed": e.allowed}
                  for e in s.scalars(select(ActionLog).order_by(ActionLog.id.desc()).limit(limit))]
        labelled = [{"when": a.created_at, "who": a.annotator, "action": a.kind,
                     "what": (f"run {a.run_id}: " if a.run_id is not None else "") + a.description, "allowed": True}
                    for a in s.scalars(select(LabelAction).order_by(LabelAction.id.desc()).limit(limit))]
    return sorted(logged + labelled, key=lambda e: _aware(e["when"]), reverse=True)[:limit]


def _aware(when: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC): compare them as UTC."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
