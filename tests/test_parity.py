"""Checkpoints written by the official scar-tool load here and score exactly as scar-tool does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scar_core.errors import ScarError
from scar_core.ranker import load_ranker


def varied_pairs() -> tuple[list[str], list[str]]:
    """About 50 pairs covering short, long (> 512 tokens), near-empty, unicode and multi-line text."""
    long_text = " ".join(f"Sentence {i} explains step {i} of the procedure in some detail." for i in range(120))
    code = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n\nprint(add(2, 3))\n"
    instructions = [
        "Say hi.", "", " ", "?", "Translate to French: good morning",
        "写一首关于秋天的短诗。", "Résumé en une phrase : la tour Eiffel.", "Explain 🙂 in words.",
        "List three fruits.\nOne per line.", long_text, "Summarise:\n\n" + long_text,
        "Write a Python function that adds two numbers.", "What is 2+2?", "Name a colour.",
    ]
    responses = [
        "Hi!", ".", "", "Yes", "Bonjour", "秋风起，落叶飞。\n金黄满地，静待冬归。",
        "La tour Eiffel est un monument de fer à Paris.", "A smiling face 🙂 means friendliness.",
        "- apple\n- pear\n- plum", long_text, "The text describes a procedure.\n" + long_text,
        code, "4", "Blue. It is the colour of a clear sky, and many people name it as their favourite.",
    ]
    pairs = [(i, r) for i in instructions[:7] for r in responses[7:]] + list(zip(instructions, responses))
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def scar_tool_checkpoint(tmp_path_factory) -> Path:
    """A scar-tool StyleRanker over the bundled MiniLM with a seeded head, saved by scar-tool itself."""
    pytest.importorskip("style_ranker")
    from style_ranker.ranker.config import StyleRankerConfig
    from style_ranker.ranker.model import StyleRanker as ToolRanker
    from transformers import AutoTokenizer

    from scar_core.encoders import bundled_encoder_path

    directory = tmp_path_factory.mktemp("scar_tool_ckpt")
    torch.manual_seed(0)
    config = StyleRankerConfig(encoder_name=str(bundled_encoder_path()), hidden_dim=384, linear_dim=256)
    ToolRanker(config).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(bundled_encoder_path())).save_pretrained(str(directory))
    return directory


@pytest.mark.slow
def test_scar_tool_checkpoint_matches_scar_tool_scores(scar_tool_checkpoint):
    from style_ranker.rank import load_ranker as tool_load
    from style_ranker.rank import score_pairs as tool_score

    from scar_core.score import score_pairs

    instructions, responses = varied_pairs()
    assert len(instructions) % 32 != 1  # scar-tool's score_pairs fails on a final batch of one
    tool_model, tool_tokenizer = tool_load(str(scar_tool_checkpoint), device="cpu")
    expected = np.array(tool_score(tool_model, tool_tokenizer, instructions, responses, batch_size=32, device="cpu"))

    ours = score_pairs(load_ranker(scar_tool_checkpoint, encoder="minilm"), instructions, responses,
                       device="cpu", precision="fp32")
    assert ours.truncated_response.any() and ours.truncated_instruction.any()
    assert np.abs(ours.score - expected).max() < 1e-4
    assert np.ptp(expected) > 1e-3  # the pairs really differ, so equality is not trivial


def test_pickled_code_in_scar_tool_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    torch.save({"relation_network.0.weight": Payload()}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"encoder_name": "minilm", "hidden_dim": 384, "linear_dim": 8}))
    with pytest.raises(ScarError, match="refused"):
        load_ranker(tmp_path, encoder="minilm")
    assert not marker.exists()
