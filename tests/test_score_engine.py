"""Scoring engine behaviour under GPU trouble: out-of-memory recovery and a missing CUDA device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scar_core.errors import ScarError
from scar_core.score import score_pairs


def mixed_pairs() -> tuple[list[str], list[str]]:
    instructions = [f"Question {i}: " + "why " * (i * 7 % 60) for i in range(30)]
    responses = [("Because. " * (i * 13 % 90)).strip() for i in range(30)]
    return instructions, responses


def oom_above(ranker, rows: int, seen: list[int]):
    """An embed that raises CUDA out-of-memory for batches of more than `rows` texts."""
    real = ranker.embed

    def embed(input_ids, attention_mask):
        seen.append(input_ids.shape[0])
        if input_ids.shape[0] > rows:
            raise torch.OutOfMemoryError("simulated CUDA out of memory")
        return real(input_ids, attention_mask)
    return embed


def test_out_of_memory_halves_the_batch_and_scores_match(ranker, monkeypatch):
    instructions, responses = mixed_pairs()
    options = dict(device="cpu", precision="fp32", batch_size=16, token_budget=4096)
    normal = score_pairs(ranker, instructions, responses, **options)

    seen: list[int] = []
    monkeypatch.setattr(ranker, "embed", oom_above(ranker, 4, seen))
    recovered = score_pairs(ranker, instructions, responses, **options)

    first_fit = next(k for k, rows in enumerate(seen) if rows <= 4)
    assert seen[0] > 4 and max(seen[first_fit:]) <= 4  # halved until it fit, and stayed there
    for field in ("score", "v_lf", "v_is"):
        np.testing.assert_allclose(getattr(recovered, field), getattr(normal, field), atol=1e-5)


def test_out_of_memory_with_a_batch_of_one_is_a_clear_error(ranker, monkeypatch):
    monkeypatch.setattr(ranker, "embed", oom_above(ranker, 0, []))
    with pytest.raises(ScarError, match="out of GPU memory even with a batch of one"):
        score_pairs(ranker, ["a", "b"], ["c", "d"], device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_is_a_clear_error(ranker):
    with pytest.raises(ScarError, match="CUDA was requested but no CUDA GPU is available"):
        score_pairs(ranker, ["a"], ["b"], device="cuda")
