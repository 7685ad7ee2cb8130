"""Rankers: registered by scoring identity (weights + LM term settings) and encoder, so identical
checkpoints share their scores."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from db.models import Ranker
from db.store import Store
from scar_core.errors import ScarError
from scar_core.ranker import DEFAULT_DIR, WEIGHTS, LMTerm, file_hash, lm_term_of, scoring_identity


def _read_checkpoint(model: str | Path) -> tuple[str, LMTerm | None, dict]:
    """(weights file sha256, LM term, config) of a checkpoint folder, without loading the model."""
    directory = DEFAULT_DIR if str(model) == "default" else Path(model).expanduser()
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ScarError(f"{directory}: not a ranker checkpoint (no config.json)")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScarError(f"{config_path}: unreadable config ({e})") from None
    if not isinstance(config, dict):
        raise ScarError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    weights = next((directory / n for n in (WEIGHTS, "pytorch_model.bin") if (directory / n).is_file()), None)
    if weights is None:
        raise ScarError(f"{directory}: no {WEIGHTS} or pytorch_model.bin")
    try:
        term = lm_term_of(config)
    except TypeError as e:
        raise ScarError(f"{config_path}: invalid lm_term ({e})") from None
    return file_hash(weights), term, config


def checkpoint_identity(model: str | Path = "default", encoder: str | None = None) -> tuple[str, str]:
    """(scoring identity, encoder name) of a checkpoint folder, read without loading the model: the
    same identity `load_ranker(model).identity` gives."""
    weights_hash, term, config = _read_checkpoint(model)
    encoder_name = encoder or config.get("encoder") or config.get("encoder_name") or ""
    return scoring_identity(weights_hash, term), str(encoder_name)


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
        weights_hash, term, _ = _read_checkpoint(ranker.location)
    except ScarError:
        return None
    return weights_hash if scoring_identity(weights_hash, term) == ranker.identity else None


def list_rankers(store: Store) -> list[Ranker]:
    with store.read() as s:
        return list(s.scalars(select(Ranker).order_by(Ranker.id)))


def get_ranker(store: Store, ranker_id: int) -> Ranker | None:
    with store.read() as s:
        return s.get(Ranker, ranker_id)
