"""Corrupt, incompatible or hostile ranker checkpoints are refused with a clear ScarError, and
loading one never runs code from it."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scar_core.errors import ScarError
from scar_core.ranker import WEIGHTS, load_ranker


@pytest.fixture
def checkpoint(tmp_path, tiny_checkpoint) -> Path:
    """A private copy of the tiny checkpoint that a test may damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _refused(path: Path, pattern: str, **kwargs) -> str:
    with pytest.raises(ScarError, match=pattern) as caught:
        load_ranker(path, **kwargs)
    return str(caught.value)


def test_the_intact_copy_loads(checkpoint):
    assert load_ranker(checkpoint).hidden_dim == 32


def test_corrupt_safetensors(checkpoint):
    weights = checkpoint / WEIGHTS
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert WEIGHTS in _refused(checkpoint, r"cannot read weights")
    weights.write_bytes(b"\xff" * 64)
    _refused(checkpoint, r"cannot read weights")


@pytest.mark.parametrize("text, pattern", [
    ("{not json", r"config\.json: unreadable config"),
    ("\xff\xfe{}", r"config\.json: unreadable config"),
    ("[1, 2]", r"config\.json: expected a JSON object"),
])
def test_config_that_is_not_a_json_object(checkpoint, text, pattern):
    (checkpoint / "config.json").write_bytes(text.encode("latin-1"))
    _refused(checkpoint, pattern)


def test_config_missing_a_setting(checkpoint):
    config = _config(checkpoint)
    del config["hidden_dim"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    _refused(checkpoint, r"config\.json: missing or invalid setting 'hidden_dim'")


def test_wrong_hidden_size(checkpoint):
    config = _config(checkpoint)
    (checkpoint / "config.json").write_text(json.dumps({**config, "hidden_dim": 64}))
    _refused(checkpoint, r"hidden_dim 64 does not match the encoder's hidden size 32")
    config["encoder_config"]["hidden_size"] = config["hidden_dim"] = 48
    (checkpoint / "config.json").write_text(json.dumps(config))
    _refused(checkpoint, r"weights of the wrong shape \(checkpoint vs model\): \['encoder\.")


def test_missing_keys(checkpoint):
    weights = checkpoint / WEIGHTS
    state = load_file(str(weights))
    del state["output_layer.2.weight"]
    save_file(state, str(weights))
    _refused(checkpoint, r"missing weights \['output_layer\.2\.weight'\]")


class _Payload:
    """Unpickling this calls open(marker, "w"): it creates the marker file if any code runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _scar_tool_dir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"encoder_name": "minilm", "hidden_dim": 384, "linear_dim": 8}))
    return folder


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_with_code_is_refused_and_never_runs(tmp_path, monkeypatch, writer):
    marker = tmp_path / "pwned"
    folder = _scar_tool_dir(tmp_path / "scar_tool")
    state = {"relation_network.0.weight": torch.zeros(1), "trap": _Payload(marker)}
    if writer == "pickle":
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(state))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # cannot switch the guard off
    message = _refused(folder, r"pytorch_model\.bin: refused to load")
    assert not marker.exists()
    assert "Traceback" not in message and "\n" not in message


def test_encoder_folder_with_custom_code_is_refused(tmp_path, checkpoint):
    """A checkpoint naming an encoder folder that ships its own modelling code: the code never runs."""
    marker = tmp_path / "pwned"
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {"AutoConfig": "modeling.EvilConfig", "AutoModel": "modeling.EvilModel"}}))
    (encoder / "modeling.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    _refused(checkpoint, r"encoder", encoder=str(encoder))
    assert not marker.exists()
