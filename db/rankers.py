"""Rankers: registered by scoring identity (weights + LM term settings) and encoder, so identical
checkpoints share their scores."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from db.models import Ranker
from db.store import Store
from scar_core.errors import ScarError
from scar_core.ranker import DEFAULT_DIR, checkpoint_hashes


def checkpoint_identity(model: str | Path = "default", encoder: str | None = None) -> tuple[str, str]:
    """(scoring identity, encoder name) of a checkpoint folder, read without loading the model."""
    _, identity, config = checkpoint_hashes(model)
    return identity, str(encoder or config.get("encoder") or config.get("encoder_name") or "")


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


def register_checkpoint(store: Store, model: str | Path = "default", encoder: str | None = None) -> Ranker:
    """Register a checkpoint folder ("default" for the bundled ranker) by its identity."""
    identity, encoder_name = checkpoint_identity(model, encoder)
    location = str(DEFAULT_DIR if str(model) == "default" else Path(model).expanduser().resolve())
    name = "default" if str(model) == "default" else Path(location).name
    return register_ranker(store, name, location, identity, encoder_name)


def weights_sha256(ranker: Ranker) -> str | None:
    """The sha256 of a registered ranker's weights file, what manifests record; None when its folder
    is gone or now holds another checkpoint."""
    try:
        weights_hash, identity, _ = checkpoint_hashes(ranker.location)
    except ScarError:
        return None
    return weights_hash if identity == ranker.identity else None


def list_rankers(store: Store) -> list[Ranker]:
    with store.read() as s:
        return list(s.scalars(select(Ranker).order_by(Ranker.id)))


def get_ranker(store: Store, ranker_id: int) -> Ranker | None:
    with store.read() as s:
        return s.get(Ranker, ranker_id)
