"""Ranker checkpoints in the store: registered by scoring identity, read from the checkpoint folder."""
from __future__ import annotations

from pathlib import Path

from db import rankers
from db.models import Ranker
from db.store import Store
from scar_core.errors import ScarError
from scar_core.export import describe_ranker
from scar_core.ranker import checkpoint_hashes, checkpoint_location


def register_checkpoint(store: Store, model: str | Path = "default", encoder: str | None = None) -> Ranker:
    """Register a checkpoint folder ("default" for the bundled ranker) by its identity, without loading it."""
    _, identity, config = checkpoint_hashes(model)
    name, location = checkpoint_location(model)
    encoder_name = str(encoder or config.get("encoder") or config.get("encoder_name") or "")
    return rankers.register_ranker(store, name, location, identity, encoder_name)


def describe(ranker: Ranker) -> dict:
    """A registered ranker as manifests record it; the weights hash is None when its folder is gone or
    now holds another checkpoint."""
    try:
        weights_hash, identity, _ = checkpoint_hashes(ranker.location)
    except ScarError:
        weights_hash = identity = None
    return describe_ranker(ranker.location, ranker.encoder, weights_hash if identity == ranker.identity else None,
                           ranker.identity)
