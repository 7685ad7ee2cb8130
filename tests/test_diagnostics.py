"""Style diagnostics: form features, score breakdown, outliers, report, map, measured surprisal."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from scar_core.cli import main
from scar_core.diagnostics.breakdown import breakdown
from scar_core.diagnostics.features import FEATURES, features_frame, text_features
from scar_core.diagnostics.outliers import Centre, style_outliers
from scar_core.diagnostics.report import build_report
from scar_core.lm import sample_rows
from scar_core.example import Example
from scar_core.map import style_map
from scar_core.select import cut


def test_length_and_sentences():
    f = text_features("The cat sat on the mat. It was very happy there. Then it slept all day.")
    assert f["words"] == 16 and f["sentences"] == 3 and f["mean_sentence_length"] == pytest.approx(16 / 3)


def test_lexical_diversity():
    assert text_features("the cat the dog")["type_token_ratio"] == 0.75
    # every word new: the TTR never falls below the threshold, so MTLD is the text's length
    assert text_features("alpha beta gamma delta")["mtld"] == pytest.approx(4.0)
    # one word repeated: each factor closes after two words, so MTLD = 6 / 3 factors
    assert text_features("go go go go go go")["mtld"] == pytest.approx(2.0)


def test_word_class_rates():
    assert text_features("the cat and the dog")["function_word_share"] == pytest.approx(3 / 5)
    f = text_features("However, the plan worked. In addition, it was cheap.")
    assert f["transitions_per_100w"] == pytest.approx(100 * 2 / 9)
    assert text_features("It might rain. I think it will.")["hedges_per_100w"] == pytest.approx(100 * 2 / 7)
    assert text_features("I love my dog and we walk.")["first_person_per_100w"] == pytest.approx(100 * 3 / 7)
    assert text_features("I’m here now.")["first_person_per_100w"] == pytest.approx(100 / 3)  # curly apostrophe


def test_punctuation_profile():
    f = text_features('Wait, really? Yes! Well: fine; ok (sure) — "done"')
    per_word = 100 / 8
    expected = {"commas": 1, "questions": 1, "exclamations": 1, "colons": 1, "semicolons": 1,
                "parentheses": 1, "dashes": 1, "quotes": 2}
    for name, count in expected.items():
        assert f[f"{name}_per_100w"] == pytest.approx(count * per_word), name


def test_markdown_structure():
    text = ("# Title\n\nIntro with **bold** and **more** text here.\n\n- a\n- b\n- c\n\n1. one\n2. two\n\n"
            "```python\nx = compute(value)\n```\n")
    f = text_features(text)
    assert (f["headings"], f["bold_spans"], f["bullet_items"], f["numbered_items"], f["code_blocks"]) == (1, 2, 3, 2, 1)
    assert f["markdown_density"] == pytest.approx(9 / 10)  # all non-blank lines but the intro paragraph
    assert f["table_rows"] == 0
    assert text_features("| a | b |\n|---|---|\n| 1 | 2 |")["table_rows"] == 2
    # code is left out of the prose measures: the identifiers do not count as sentence words
    assert f["mean_sentence_length"] == pytest.approx(13 / 7)  # 13 prose words in 7 blocks


def test_features_frame_shape_and_empty_text():
    frame = features_frame(["", "Plain words only."])
    assert list(frame.columns) == list(FEATURES) and len(frame) == 2
    assert (frame.iloc[0] == 0).all()
    assert len(features_frame([])) == 0


def test_breakdown_adds_up_to_score_minus_baseline(ranker):
    rng = np.random.default_rng(0)
    v_is, v_lf = rng.normal(size=(50, 32)).astype(np.float32), rng.normal(size=(50, 32)).astype(np.float32)
    parts = breakdown(ranker, v_is, v_lf, chunk_rows=16)
    with torch.inference_mode():
        direct = ranker.score_from(torch.from_numpy(v_is), torch.from_numpy(v_lf)).numpy()
    np.testing.assert_allclose(parts.score, direct, rtol=1e-6)
    np.testing.assert_allclose(parts.lf_contribution + parts.is_contribution, parts.score - parts.baseline,
                               rtol=0, atol=1e-12)
    assert np.abs(parts.lf_contribution).max() > 0 and np.abs(parts.is_contribution).max() > 0
    # a row at the data-set mean gets no credit on either side
    at_mean = breakdown(ranker, v_is[:1] * 0 + v_is.mean(0), v_lf[:1] * 0 + v_lf.mean(0),
                        mean_is=v_is.mean(0), mean_lf=v_lf.mean(0))
    assert at_mean.lf_contribution[0] == pytest.approx(0, abs=1e-6)
    assert at_mean.is_contribution[0] == pytest.approx(0, abs=1e-6)


def test_breakdown_gives_no_credit_to_an_unused_representation(ranker):
    with torch.no_grad():
        ranker.output_layer[0].weight[:, :ranker.hidden_dim] = 0  # the head ignores v_is
    rng = np.random.default_rng(1)
    parts = breakdown(ranker, rng.normal(size=(20, 32)), rng.normal(size=(20, 32)))
    assert np.abs(parts.is_contribution).max() < 1e-6  # zero up to float32 rounding
    assert np.abs(parts.lf_contribution).max() > 1e-3


def test_outlier_distances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    x[:, 3] = 5.0  # a constant dimension carries no information and is ignored
    x[0] = 8.0
    x[0, 3] = 5.0
    d = Centre.of(x).distance(x)
    assert np.mean(d ** 2) == pytest.approx(1.0)
    assert int(np.argmax(d)) == 0
    lf, is_ = style_outliers(x, x * 3 + 1)  # standardised: scale and shift do not change distances
    np.testing.assert_allclose(lf, is_)
    assert [len(a) for a in style_outliers(np.zeros((0, 4)), np.zeros((0, 4)))] == [0, 0]


def test_report_flags_a_length_ranking_and_compares_the_cut():
    rng = np.random.default_rng(0)
    words = rng.integers(20, 500, size=200).astype(float)
    table = pd.DataFrame({"score": words / 100 + rng.normal(0, 0.1, 200), "words": words,
                          "commas_per_100w": rng.normal(5, 1, 200), "constant": np.ones(200),
                          "nll": np.where(np.arange(200) < 50, rng.normal(2, 0.5, 200), np.nan)})
    report = build_report(table, cut(table["score"].to_numpy(), ratio=0.25))
    json.dumps(report, allow_nan=False)
    assert report["headline"]["words"] > 0.9
    assert len(report["warnings"]) == 1 and "response length" in report["warnings"][0]
    assert report["correlations"]["constant"]["rho"] is None
    assert report["correlations"]["nll"]["n"] == 50
    words_cmp = report["selection"]["columns"]["words"]
    assert report["selection"]["selected"] == 50 and words_cmp["n_dropped"] == 150
    assert words_cmp["selected_mean"] > words_cmp["dropped_mean"] and words_cmp["std_difference"] > 1


def test_map_is_seeded_and_keeps_clusters_apart():
    rng = np.random.default_rng(0)
    lf = np.concatenate([rng.normal(0, 1, (30, 16)), rng.normal(6, 1, (30, 16))])
    first, again = style_map(lf, lf[:, ::-1], seed=3), style_map(lf, lf[:, ::-1], seed=3)
    assert first.method == "umap" and first.lf.shape == (60, 2) and np.isfinite(first.lf).all()
    np.testing.assert_array_equal(first.lf, again.lf)
    centre_a, centre_b = first.lf[:30].mean(0), first.lf[30:].mean(0)
    to_a, to_b = (np.linalg.norm(first.lf[:30] - c, axis=1) for c in (centre_a, centre_b))
    assert (to_a < to_b).all()
    tiny = style_map(lf[:5], lf[:5], seed=0)
    assert tiny.method == "pca" and tiny.is_.shape == (5, 2)


def test_sample_rows_is_seeded_and_sorted():
    a, b = sample_rows(100, 10, seed=1), sample_rows(100, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10 and (np.diff(a) > 0).all()
    assert len(sample_rows(5, 10)) == 5


def test_diagnose_and_score_commands(small_pool, tiny_checkpoint, tmp_path):
    report_path, scores_path = tmp_path / "report.json", tmp_path / "scores.jsonl"
    assert main(["diagnose", str(small_pool), "--out", str(report_path), "--model", str(tiny_checkpoint),
                 "--ratio", "0.5", "--device", "cpu"]) == 0
    report = json.loads(report_path.read_text())
    assert report["rows"] == 12 and report["selection"]["selected"] == 6
    assert set(FEATURES) <= set(report["correlations"]) and "breakdown" in report
    assert main(["score", str(small_pool), "--out", str(scores_path), "--model", str(tiny_checkpoint),
                 "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in scores_path.read_text().splitlines()]
    baselines = [r["score"] - r["lf_contribution"] - r["is_contribution"] for r in lines]
    assert max(baselines) - min(baselines) < 1e-5  # every score = shared baseline + form + surprisal
    assert all({"lf_outlier", "is_outlier", "words", "markdown_density"} <= set(r) for r in lines)
    assert lines[1]["numbered_items"] == 2 and lines[0]["first_person_per_100w"] > 0


def test_score_breakdown_includes_the_lm_terms_share(small_pool, tiny_lm, tmp_path):
    from scar_core.ranker import LMTerm
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=2.0))
    ranker.lm_weight.data.fill_(0.5)
    ranker.save(tmp_path / "lm-ranker")
    report_path, scores_path = tmp_path / "report.json", tmp_path / "scores.jsonl"
    common = ["--model", str(tmp_path / "lm-ranker"), "--device", "cpu", "--precision", "fp32"]
    assert main(["score", str(small_pool), "--out", str(scores_path), *common]) == 0
    lines = [json.loads(line) for line in scores_path.read_text().splitlines()]
    lm = np.array([r["lm_contribution"] for r in lines])
    baselines = np.array([r["score"] - r["lf_contribution"] - r["is_contribution"] for r in lines]) - lm
    assert np.ptp(baselines) < 1e-5 < np.ptp(lm)  # score = shared baseline + form + surprisal + LM term
    assert main(["diagnose", str(small_pool), "--out", str(report_path), "--ratio", "0.5", *common]) == 0
    summary = json.loads(report_path.read_text())["breakdown"]
    assert summary["baseline"] == pytest.approx(float(baselines.mean()), abs=1e-5)
    assert summary["mean_abs_lm_contribution"] == pytest.approx(float(np.abs(lm).mean()), rel=1e-5)
    assert 0 < summary["lm_share"] < 1


def test_diagnose_rejects_a_sample_without_surprisal(small_pool, tiny_checkpoint, tmp_path, capsys):
    assert main(["diagnose", str(small_pool), "--out", str(tmp_path / "r.json"), "--model", str(tiny_checkpoint),
                 "--sample", "5"]) == 2
    assert "--surprisal" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smollm2():
    from scar_core.lm import load_language_model

    return load_language_model("smollm2", device="cpu", precision="fp32")


@pytest.mark.slow
def test_perplexity_ranks_fluent_below_word_salad(smollm2):
    from scar_core.lm import measure_surprisal

    question = "What is the capital of France?"
    pairs = [Example(question, "The capital of France is Paris."),
             Example(question, "Spoon gravel the sideways of purple Paris quantum elephant."),
             Example("Name a primary colour.", "Red is a primary colour.")]
    measured = measure_surprisal(pairs, smollm2, sample=None)
    np.testing.assert_array_equal(measured.index, [0, 1, 2])
    assert measured.perplexity[0] < measured.perplexity[1] and measured.perplexity[2] < measured.perplexity[1]
    np.testing.assert_allclose(measured.perplexity, np.exp(measured.nll))
    alone = measure_surprisal(pairs[:1], smollm2)  # batching with longer rows does not change a row's value
    assert alone.nll[0] == pytest.approx(measured.nll[0], rel=1e-4)


def test_copied_tokens_marks_runs_shared_with_the_prompt():
    from scar_core.lm import copied_tokens

    prompt = [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(copied_tokens(prompt, [9, 2, 3, 4, 5, 8, 1, 2, 3], 4),
                                  [False, True, True, True, True, False, False, False, False])
    assert not copied_tokens(prompt, [9, 2, 3, 4, 5, 8], 5).any()  # the shared run is 4 long
    assert copied_tokens(prompt, [3, 4, 5, 6, 7], 4).all()
    assert copied_tokens(prompt, [], 4).shape == (0,)


@pytest.mark.slow
def test_text_copied_from_the_prompt_is_left_out_of_the_nll(smollm2):
    from scar_core.lm import _encode, copied_tokens, measure_surprisal

    passage = ("The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the one-mile-wide strait "
               "connecting San Francisco Bay and the Pacific Ocean.")
    question = f"What does the Golden Gate Bridge span?\n\n{passage}"
    pairs = [Example(question, passage),
             Example(question, "It crosses the strait between San Francisco Bay and the ocean, connecting the "
                               "Golden Gate, the one-mile-wide strait, to Marin County."),
             Example(question, "A strait.")]
    every = measure_surprisal(pairs, smollm2)
    novel = measure_surprisal(pairs, smollm2, copy_span=4)
    assert every.nll[0] < 0.5 * every.nll[2]  # a pasted passage looks very predictable to an LM
    assert np.isnan(novel.nll[0]) and novel.tokens[0] == 0  # ...and with copy_span it does not count at all
    assert novel.nll[2] == pytest.approx(every.nll[2], rel=1e-5) and novel.tokens[2] == every.tokens[2]
    # "A strait." is four tokens: with min_tokens 5 too few to measure; the other answers are unchanged.
    short = measure_surprisal(pairs, smollm2, copy_span=4, min_tokens=5)
    assert novel.tokens[2] == 4 and np.isnan(short.nll[2]) and short.tokens[2] == 0
    assert short.nll[1] == novel.nll[1] and short.tokens[1] == novel.tokens[1] >= 5

    # The partly copied answer: the mean NLL of exactly its tokens outside the copied run.
    prompt, response, _, _ = _encode(smollm2.tokenizer, pairs[1], 1024, None)
    counted = ~copied_tokens(prompt, response, 4)
    assert 0 < counted.sum() < len(response) and novel.tokens[1] == counted.sum()
    with torch.inference_mode():
        logits = smollm2.model(input_ids=torch.tensor([prompt + response])).logits[0].float()
    losses = torch.nn.functional.cross_entropy(logits[len(prompt) - 1:-1], torch.tensor(response), reduction="none")
    assert novel.nll[1] == pytest.approx(float(losses[torch.from_numpy(counted)].mean()), rel=1e-4)
    assert every.nll[1] == pytest.approx(float(losses.mean()), rel=1e-4)


@pytest.mark.slow
def test_the_end_of_turn_counts_after_a_whole_response(smollm2):
    from scar_core.lm import _encode, end_of_turn, measure_surprisal

    end = end_of_turn(smollm2.tokenizer)
    assert smollm2.tokenizer.convert_ids_to_tokens([end]) == ["<|im_end|>"]  # SmolLM2's chat template
    question = "Name the largest planet in the solar system."
    pairs = [Example(question, "Jupiter is the largest planet in the solar system, more than twice as massive as "
                               "all the other planets combined."),
             Example(question, "Jupiter is the largest planet in the solar system, more than twice as massive as"),
             Example(question, "Name the largest planet in the solar system.")]
    with_end = _encode(smollm2.tokenizer, pairs[0], 256, 4, 4, end=end)
    without = _encode(smollm2.tokenizer, pairs[0], 256, 4, 4)
    assert with_end.response == [*without.response, end] and with_end.counted.tolist() == [*without.counted, True]
    before = measure_surprisal(pairs, smollm2, copy_span=4, min_tokens=4)
    after = measure_surprisal(pairs, smollm2, copy_span=4, min_tokens=4, count_end=True)
    assert after.tokens[:2].tolist() == (before.tokens[:2] + 1).tolist()
    end_nll = after.nll[:2] * after.tokens[:2] - before.nll[:2] * before.tokens[:2]
    assert end_nll[0] < 1.0 < 10.0 < end_nll[1]  # an answer that stops mid-sentence is an unlikely place to end
    assert np.isnan(after.nll[2]) and after.tokens[2] == 0  # an echo of the prompt: still nothing measured
    cut = measure_surprisal(pairs[:1], smollm2, max_tokens=24, copy_span=4, count_end=True)
    assert cut.truncated[0] and _encode(smollm2.tokenizer, pairs[0], 24, 4, end=end).response[-1] != end
