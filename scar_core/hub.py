"""Rankers from the Hugging Face Hub: fetched into the local cache when the machine is online."""
from __future__ import annotations

import re
from pathlib import Path

from scar_core.errors import ScarError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def offline() -> bool:
    """True when the Hub is switched off (HF_HUB_OFFLINE), so only local checkpoints can be used."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_folder() -> Path:
    """Where fetched checkpoints live (the Hugging Face Hub cache)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch(repo_id: str) -> Path:
    """The local folder of a Hub ranker checkpoint (downloaded once, then cached)."""
    repo_id = repo_id.strip()
    if not _REPO_ID.match(repo_id):
        raise ScarError(f"'{repo_id}' is not a hub id of the form owner/name")
    if offline():
        raise ScarError("the Hub is switched off on this machine (HF_HUB_OFFLINE is set); use a local checkpoint")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt",
                                                               "tokenizer/*", "*.model"]))
    except Exception as e:  # network, authentication and not-found errors all end here
        raise ScarError(f"could not fetch {repo_id} from the Hub: {type(e).__name__}: {e}") from None
