"""The LM term's NLL computes vocabulary logits only where a counted token is predicted, and a CPU
bf16 LM holds bf16 weights (scar_core.lm)."""
import numpy as np
import torch
from scipy.stats import spearmanr

from scar_core.example import Example
from scar_core.lm import _batch_nll, _batch_nll_full, _body_and_head, _encode, load_language_model, response_nll


def test_logits_at_counted_positions_only_give_the_full_forwards_nll(tiny_lm):
    lm = load_language_model(str(tiny_lm), "cpu", "fp32")
    assert _body_and_head(lm.model) is not None
    examples = [Example(instruction="Summarise: the cat sat on the mat all day long.",
                        response="The cat sat on the mat."),
                Example(instruction="Why is the sky blue?", response="Rayleigh scattering of sunlight by air."),
                Example(instruction="a much longer prompt " * 12, response="short"),
                Example(instruction="Repeat: one two three four five", response="one two three four five")]
    batch = [_encode(lm.tokenizer, e, 64, 4, None, lm.tokenizer.sep_token_id) for e in examples]
    gathered, full = _batch_nll(lm, batch), _batch_nll_full(lm, batch)
    assert np.array_equal(np.isnan(gathered), np.isnan(full))
    assert np.isnan(full).any() and not np.isnan(full).all()  # the copied response counts no token
    np.testing.assert_allclose(gathered[~np.isnan(full)], full[~np.isnan(full)], rtol=1e-5, atol=1e-5)


def test_a_bf16_lm_on_cpu_holds_bf16_weights_and_ranks_responses_as_fp32_does(tiny_lm):
    fp32, bf16 = (load_language_model(str(tiny_lm), "cpu", p) for p in ("fp32", "bf16"))
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    assert bf16.model.config._attn_implementation == "eager"
    instructions = [f"Question {i}: what is {i} plus {i}?" for i in range(12)]
    responses = [" ".join(["the answer is", str(2 * i)] + ["and so on"] * (i % 5)) for i in range(12)]
    a, b = response_nll(fp32, instructions, responses), response_nll(bf16, instructions, responses)
    np.testing.assert_allclose(b, a, rtol=0.02)
    assert spearmanr(a, b).statistic > 0.95
