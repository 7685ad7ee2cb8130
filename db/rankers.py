"""Rankers: registered by weights hash and encoder, so identical checkpoints share their scores."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from db.models import Ranker
from db.store import Store
from scar_core.errors import ScarError
from scar_core.ranker import DEFAULT_DIR, WEIGHTS, file_hash


def checkpoint_identity(model: str | Path = "default", encoder: str | None = None) -> tuple[str, str]:
    """(weights sha256, encoder name) of a checkpoint folder, read without loading the model."""
    directory = DEFAULT_DIR if str(model) == "default" else Path(model).expanduser()
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ScarError(f"{directory}: not a ranker checkpoint (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScarError(f"{config_path}: unreadable config ({e})") from None
    weights = directory / WEIGHTS
    if not weights.is_file():
        weights = directory / "pytorch_model.bin"
    if not weights.is_file():
        raise ScarError(f"{directory}: no {WEIGHTS} or pytorch_model.bin")
    return file_hash(weights), str(encoder or config.get("encoder") or config.get("encoder_name") or "")


def register_ranker(store: Store, name: str, location: str, weights_hash: str, encoder: str,
                    recipe: dict | None = None, metrics: dict | None = None) -> Ranker:
    """The ranker with this weights hash and encoder, created if new (recipe/metrics updated when given)."""
    def work(session) -> Ranker:
        ranker = session.scalar(select(Ranker).where(Ranker.weights_hash == weights_hash, Ranker.encoder == encoder))
        if ranker is None:
            ranker = Ranker(name=name, location=location, weights_hash=weights_hash, encoder=encoder,
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
    weights_hash, encoder_name = checkpoint_identity(model, encoder)
    location = str(DEFAULT_DIR if str(model) == "default" else Path(model).expanduser().resolve())
    name = "default" if str(model) == "default" else Path(location).name
    return register_ranker(store, name, location, weights_hash, encoder_name)


def list_rankers(store: Store) -> list[Ranker]:
    with store.read() as s:
        return list(s.scalars(select(Ranker).order_by(Ranker.id)))


def get_ranker(store: Store, ranker_id: int) -> Ranker | None:
    with store.read() as s:
        return s.get(Ranker, ranker_id)
