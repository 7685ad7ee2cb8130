"""Rankers: registered by scoring identity (weights + LM term settings) and encoder, so identical
checkpoints share their scores."""
from __future__ import annotations

from sqlalchemy import select

from db.models import Ranker
from db.store import Store


def register_ranker(store: Store, name: str, location: str, identity: str, encoder: str,
                    recipe: dict | None = None, metrics: dict | None = None) -> Ranker:
    """The ranker with this identity and encoder, created if new (recipe/metrics updated when given)."""
    def work(session) -> Ranker:
        ranker = session.scalar(select(Ranker).where(Ranker.identity == identity, Ranker.encoder == encoder))
        if ranker is None:
            ranker = Ranker(name=name, location=location, identity=identity, encoder=encoder,
                            recipe=recipe or {}, metrics=metrics or {})
            session.add(ranker)
        else:
            ranker.location = location
            if recipe is not None:
                ranker.recipe = recipe
            if metrics is not None:
                ranker.metrics = metrics
        session.flush()
        return ranker

    return store.transact(work)


def list_rankers(store: Store) -> list[Ranker]:
    with store.read() as s:
        return list(s.scalars(select(Ranker).order_by(Ranker.id)))


def get_ranker(store: Store, ranker_id: int) -> Ranker | None:
    with store.read() as s:
        return s.get(Ranker, ranker_id)
