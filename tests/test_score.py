"""The scoring engine: same numbers as a plain forward pass, in input order, for any batch shape."""
import numpy as np
import pytest
import torch

from scar_core import score_pairs
from scar_core.errors import ScarError
from scar_core.device import resolve_device

INSTRUCTIONS = ["Say hi", "Say hi", "What is 2+2?", "", "Write a poem about the sea. " * 8, "x"]
RESPONSES = ["hello there", "hi", "4", "", "The sea is wide and blue. " * 30, "y"]


def plain_forward(ranker, instructions, responses):
    tok = ranker.tokenizer
    a = tok(instructions, return_tensors="pt", padding=True, truncation=True, max_length=512)
    b = tok(responses, return_tensors="pt", padding=True, truncation=True, max_length=512)
    with torch.no_grad():
        return ranker(a.input_ids, a.attention_mask, b.input_ids, b.attention_mask)


@pytest.mark.parametrize("batch_size, budget", [(1, 16384), (2, 64), (64, 16384)])
def test_matches_plain_forward_in_input_order(ranker, batch_size, budget):
    expected = plain_forward(ranker, INSTRUCTIONS, RESPONSES)
    got = score_pairs(ranker, INSTRUCTIONS, RESPONSES, precision="fp32", batch_size=batch_size,
                      token_budget=budget, chunk_rows=4)
    np.testing.assert_allclose(got.score, expected.score.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.v_lf, expected.v_lf.numpy(), atol=1e-5)
    np.testing.assert_allclose(got.v_is, expected.v_is.numpy(), atol=1e-5)


def test_progress_reports_every_row(ranker):
    seen = []
    score_pairs(ranker, INSTRUCTIONS, RESPONSES, chunk_rows=2, progress=lambda d, t, r: seen.append((d, t)))
    assert seen[-1] == (len(RESPONSES), len(RESPONSES))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_truncation_is_recorded_per_row(ranker):
    long = "word " * 700
    got = score_pairs(ranker, [long, "short"], ["short", long])
    assert got.truncated_instruction.tolist() == [True, False]
    assert got.truncated_response.tolist() == [False, True]


def test_bf16_ranks_like_fp32(ranker):
    from scipy.stats import spearmanr

    ins = [f"Question number {i}: explain topic {i % 7}" for i in range(40)]
    res = [("Answer " + "detail " * (i % 13)) for i in range(40)]
    fp32 = score_pairs(ranker, ins, res, precision="fp32").score
    bf16 = score_pairs(ranker, ins, res, precision="bf16").score
    assert spearmanr(fp32, bf16).statistic > 0.99


def test_empty_input_gives_empty_scores(ranker):
    got = score_pairs(ranker, [], [])
    assert got.score.shape == (0,) and got.v_lf.shape == (0, ranker.hidden_dim)


def test_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ScarError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_progress_is_reported_every_chunk_on_a_cpu(ranker):
    """Long inputs show a rate and an ETA soon: on a CPU a chunk is 64 rows, each reported."""
    seen = []
    score_pairs(ranker, [f"Question {i}?" for i in range(150)], [f"Answer {i}." for i in range(150)],
                device="cpu", precision="fp32", progress=lambda done, total, rate: seen.append((done, total)))
    assert seen == [(64, 150), (128, 150), (150, 150)]
