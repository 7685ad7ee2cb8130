"""Training, evaluation and training-row validation on a tiny generated data set and a tiny random encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scar_core.cli import main
from scar_core.errors import InputError, ScarError
from scar_core.evaluate import pairwise_report, score_rows
from scar_core.ranker import DEFAULT_DIR, load_ranker
from scar_core.train import TrainConfig, encode_features, scar_loss, train
from scar_core.training_data import TrainRow, quality_allows, read_training_rows, training_pairs
from tests.conftest import tiny_ranker

TOPICS = ["rivers", "tax forms", "the moon", "sourdough", "chess openings", "printers", "volcanoes", "jazz",
          "gardening", "compilers", "knitting", "tides", "bicycles", "coffee", "glaciers", "owls"]


def rows_file(tmp_path, n: int = 16, **extra) -> str:
    """Rows whose three responses differ in style: casual human, plain rewrite, formal LLM answer."""
    path = tmp_path / "rows.jsonl"
    with open(path, "w") as f:
        for topic in TOPICS[:n]:
            f.write(json.dumps({
                "instruction": f"Tell me about {topic}.",
                "human": f"lol {topic} r kinda cool i guess",
                "referenced": f"{topic.capitalize()} are quite interesting.",
                "direct": f"Certainly! Here is an overview of {topic}. In summary, {topic} matter a great deal.",
                "source": "toy/" + ("a" if len(topic) % 2 else "b"), **extra}) + "\n")
    return str(path)


def test_loss_decreases_and_checkpoint_round_trips(tmp_path):
    rows = read_training_rows([rows_file(tmp_path)])
    ranker = tiny_ranker()
    config = TrainConfig(epochs=6, batch_size=4, lr=3e-3, val_ratio=0.25, freeze_encoder=True,
                         save_encoder=True, device="cpu")
    seen = []
    result = train(ranker, rows, config, out=tmp_path / "model", progress=seen.append)
    losses = [e.loss for e in result.history]
    assert losses[-1] < losses[0]
    assert {p.phase for p in seen} == {"encode", "train", "epoch"}
    assert result.n_train_rows + result.n_val_rows == len(rows) and result.n_val_rows == 4
    assert result.train_pairs == {"d>r": 12, "r>h": 12, "d>h": 12}
    before = score_rows(ranker, rows, device="cpu", precision="fp32")
    after = score_rows(load_ranker(tmp_path / "model"), rows, device="cpu", precision="fp32")
    for role in before:
        np.testing.assert_allclose(after[role], before[role], rtol=1e-5, atol=1e-5)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["training"]["result"]["best_epoch"] == result.best_epoch


def test_fp16_checkpoint_halves_the_file_and_loads_as_fp32(tmp_path):
    from safetensors import safe_open

    rows = read_training_rows([rows_file(tmp_path, n=4)])
    ranker = tiny_ranker()
    ranker.save(tmp_path / "fp32")
    ranker.save(tmp_path / "fp16", dtype=torch.float16)
    with safe_open(str(tmp_path / "fp16" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    size = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("fp32", "fp16")}
    assert size["fp16"] < 0.6 * size["fp32"]
    loaded = load_ranker(tmp_path / "fp16")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    before = score_rows(ranker, rows, device="cpu", precision="fp32")
    after = score_rows(loaded, rows, device="cpu", precision="fp32")
    for role in before:
        np.testing.assert_allclose(after[role], before[role], rtol=1e-2, atol=1e-2)


def test_live_encoder_and_lora_training_update_the_encoder(tmp_path):
    rows = read_training_rows([rows_file(tmp_path, n=6)])
    for adapters in (None, "lora"):
        ranker = tiny_ranker()
        weight = ranker.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
        fast = {"train_precision": "bf16", "max_length": 16} if adapters is None else {}
        train(ranker, rows, TrainConfig(epochs=1, batch_size=3, lr=1e-2, val_ratio=0.0, adapters=adapters,
                                        device="cpu", **fast))
        changed = ranker.encoder.encoder.layer[0].attention.self.query.weight
        assert not torch.equal(weight, changed), adapters


def scored(quality: dict[str, float]) -> TrainRow:
    return TrainRow("q", {"human": "h", "referenced": "r", "direct": "d"}, quality)


@pytest.mark.parametrize("mode, quality, expected", [
    ("abs", {"human": 4.0, "referenced": 6.0, "direct": 8.0}, {"d>r"}),
    ("abs", {"human": 5.5, "referenced": 6.0, "direct": 9.5}, {"d>r", "r>h", "d>h"}),
    ("abs_pos", {"human": 1.0, "referenced": 4.0, "direct": 8.0}, {"d>r", "d>h"}),
    ("diff", {"human": 1.0, "referenced": 4.0, "direct": 8.0}, {"d>r", "r>h", "d>h"}),
    ("none", {"human": 0.0, "referenced": 0.0, "direct": 0.0}, {"d>r", "r>h", "d>h"}),
])
def test_quality_constraint_selects_pairs(mode, quality, expected):
    names = {"direct": "d", "referenced": "r", "human": "h"}
    pairs = training_pairs(scored(quality), mode)
    assert {f"{names[a]}>{names[b]}" for a, b in pairs} == expected


def test_quality_constraint_edges_and_identical_texts():
    assert quality_allows("diff", 9.0, 1.0, maximum=5.0) is False
    assert quality_allows("abs_diff", 8.0, 6.0, minimum=5.0, maximum=10.0) is True
    assert quality_allows("abs_diff", 8.0, 4.0, minimum=5.0, maximum=10.0) is False
    assert quality_allows("abs", None, 2.0) is True  # nothing to check without both scores
    same = TrainRow("q", {"human": "same", "referenced": "same", "direct": "d"})
    assert training_pairs(same, "none") == [("direct", "referenced"), ("direct", "human")]
    partial = TrainRow("q", {"human": "h", "direct": "d"})
    assert training_pairs(partial) == [("direct", "human")]


def test_representation_loss_only_on_complete_rows():
    config = TrainConfig()
    zeros = torch.zeros(2, 4)
    outputs = {role: (torch.zeros(2), zeros, zeros) for role in ("human", "referenced", "direct")}
    ranking_only = scar_loss(outputs, [[("direct", "human")], [("direct", "human")]], config)
    assert ranking_only.item() == pytest.approx(0.5)  # margin 0.5, equal scores
    everything = [[("direct", "referenced"), ("referenced", "human"), ("direct", "human")]] * 2
    # three ranking terms of 0.5 plus 0.1 x triplet(1.0 margin, identical vectors) = 1.5 + 0.1
    assert scar_loss(outputs, everything, config).item() == pytest.approx(1.6, abs=1e-4)
    assert scar_loss(outputs, [[], []], config) is None


@pytest.mark.parametrize("field, value, message", [
    ("direct_score", float("nan"), "finite"),
    ("human_helpfulness", "7", "must be a number"),
    ("referenced", 3, "must be text or null"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, field, value, message):
    path = rows_file(tmp_path, n=2)
    with open(path, "a") as f:
        f.write(json.dumps({"instruction": "x", "human": "a", "direct": "b", field: value}) + "\n")
    with pytest.raises(InputError) as e:
        read_training_rows([path])
    assert e.value.where == "line 3" and e.value.field == field and message in str(e.value)
    assert str(path) in str(e.value)


def test_scores_in_both_forms_are_refused_and_helpfulness_correctness_average(tmp_path):
    path = rows_file(tmp_path, n=1, direct_helpfulness=6, direct_correctness=8)
    assert read_training_rows([path])[0].quality == {"direct": 7.0}
    with pytest.raises(InputError, match="not both"):
        read_training_rows([rows_file(tmp_path, n=1, human_score=6, human_correctness=8)])


def test_no_usable_pairs_is_a_clear_error(tmp_path):
    rows = read_training_rows([rows_file(tmp_path, n=4, human_score=1, referenced_score=1, direct_score=1)])
    with pytest.raises(ScarError, match="no training pairs"):
        train(tiny_ranker(), rows, TrainConfig(freeze_encoder=True, device="cpu"))


def test_pairwise_report_and_length_baseline():
    rows = [TrainRow("q1", {"human": "a much longer human answer", "direct": "short"}, source="s1"),
            TrainRow("q2", {"human": "h", "referenced": "rr", "direct": "ddd"}, source="s2")]
    scores = {"human": np.array([0.0, 0.0]), "referenced": np.array([np.nan, 1.0]), "direct": np.array([1.0, -1.0])}
    report = pairwise_report(rows, scores)
    assert report["n_pairs"] == 4
    assert report["pair_types"]["d>h"] == {"accuracy": 0.5, "n_pairs": 2}
    assert report["pair_types"]["r>h"] == {"accuracy": 1.0, "n_pairs": 1}
    assert report["length_baseline"]["pairwise_accuracy"] == 0.75
    assert report["length_controlled"]["better_not_longer"] == {"accuracy": 1.0, "n_pairs": 1}
    assert report["length_controlled"]["length_baseline_balanced_accuracy"] == 0.5
    assert report["by_source"]["s1"]["n_pairs"] == 1


def test_eval_command_prints_json_last(tmp_path, tiny_checkpoint, capsys):
    path = rows_file(tmp_path, n=4)
    assert main(["eval", "--model", str(tiny_checkpoint), path, "--device", "cpu", "--exclude-source", "toy/b"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected_rows = sum(1 for t in TOPICS[:4] if len(t) % 2)
    assert report["n_rows"] == expected_rows and report["n_pairs"] == 3 * expected_rows
    assert set(report["pair_types"]) == {"d>r", "r>h", "d>h"}
    assert 0.0 <= report["pairwise_accuracy"] <= 1.0


def test_train_command_reports_bad_data_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "x", "human": "a", "direct": "b", "direct_score": "high"}\n')
    assert main(["train", str(path), "--out", str(tmp_path / "m"), "--encoder", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl, line 1: field 'direct_score'" in err and "Traceback" not in err


@pytest.mark.slow
def test_default_ranker_loads_offline_and_stays_under_50_mb():
    ranker = load_ranker("default")
    config = json.loads((DEFAULT_DIR / "config.json").read_text())
    assert config["encoder"] == "minilm"
    term = ranker.lm_term
    assert term.lm == "smollm2" and term.copy_span == term.min_tokens == 4 and term.count_end is True  # README
    assert {p.dtype for p in ranker.parameters()} == {torch.float32}
    assert config["training"]["result"]["best_val_accuracy"] is not None
    weights = sum(p.stat().st_size for p in DEFAULT_DIR.rglob("*") if p.is_file())
    assert weights < 50 * 2**20
    scores = score_rows(ranker, [TrainRow("What is 2 + 2?", {"human": "4", "direct": "2 + 2 equals 4."})],
                        device="cpu", precision="fp32")
    assert np.isfinite(scores["human"][0]) and np.isfinite(scores["direct"][0])


def test_train_command_continues_from_a_trained_ranker(tmp_path, tiny_checkpoint, capsys):
    path = rows_file(tmp_path, n=8)
    rows = read_training_rows([path])
    start = score_rows(load_ranker(tiny_checkpoint), rows, device="cpu", precision="fp32")
    # No epochs of training would change nothing: with lr 0 the saved model must equal the start.
    assert main(["train", path, "--init", str(tiny_checkpoint), "--out", str(tmp_path / "same"), "--lr", "0",
                 "--epochs", "1", "--device", "cpu", "--batch-size", "4"]) == 0
    same = score_rows(load_ranker(tmp_path / "same"), rows, device="cpu", precision="fp32")
    for role in start:
        np.testing.assert_allclose(same[role], start[role], rtol=1e-5, atol=1e-6)
    assert main(["train", path, "--init", str(tiny_checkpoint), "--out", str(tmp_path / "tuned"), "--lr", "3e-3",
                 "--epochs", "2", "--device", "cpu", "--batch-size", "4"]) == 0
    tuned = load_ranker(tmp_path / "tuned")
    saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert saved["includes_encoder"] and saved["training"]["init"] == str(tiny_checkpoint)
    original = load_ranker(tiny_checkpoint)
    changed = [name for name, p in tuned.encoder.named_parameters()
               if not torch.equal(p, dict(original.encoder.named_parameters())[name])]
    assert changed, "the encoder was not fine-tuned"
    capsys.readouterr()
    assert main(["train", path, "--init", str(tiny_checkpoint), "--linear-dim", "8", "--out", str(tmp_path / "x")]) == 2
    assert "--linear-dim" in capsys.readouterr().err


def test_length_debias_adds_shortened_llm_answers_on_the_training_side_only(tmp_path):
    from scar_core.training_data import length_debiased

    human = "A short human reply that runs for a while, about seventy characters."
    direct = "First point. Second point here! Third one? And a very long closing sentence that goes on and on."
    rows = [TrainRow("q1", {"human": human, "direct": direct}, source="s"),
            TrainRow("q2", {"human": direct * 2, "direct": direct}),        # human already longer
            TrainRow("q3", {"referenced": human, "direct": direct})]         # no human answer
    extra = length_debiased(rows, seed=1)
    assert len(extra) == 1 and extra == length_debiased(rows, seed=1)
    cut = extra[0].responses["direct"]
    assert direct.startswith(cut) and cut[-1] in ".!?" and len(cut) < len(human)
    assert extra[0].responses["human"] == human and extra[0].source == "s" and extra[0].pairs() == [("direct", "human")]

    data = read_training_rows([rows_file(tmp_path)])
    config = TrainConfig(epochs=2, batch_size=4, lr=3e-3, val_ratio=0.25, freeze_encoder=True, device="cpu",
                         length_debias=True)
    result = train(tiny_ranker(), data, config)
    assert result.n_length_debias_rows == 12  # one per training row: each toy LLM answer opens with "Certainly!"
    assert result.n_train_rows == 12 + 12 and result.n_val_rows == 4
    assert result.train_pairs["d>h"] == 24 and result.train_pairs["d>r"] == 12
    # Features computed beforehand for the original rows: the shortened rows are encoded and appended.
    ranker = tiny_ranker()
    features = encode_features(ranker, data, device="cpu", precision="fp32")
    reused = train(ranker, data, TrainConfig(**{**config.__dict__, "encode_precision": "fp32"}), features=features)
    again = train(tiny_ranker(), data, TrainConfig(**{**config.__dict__, "encode_precision": "fp32"}))
    assert [e.loss for e in reused.history] == pytest.approx([e.loss for e in again.history], rel=1e-5)


def test_lm_term_trains_its_weight_saves_and_scores_as_trained(tmp_path, tiny_lm):
    from scar_core.lm import load_language_model, response_nll
    from scar_core.ranker import LMTerm

    rows = read_training_rows([rows_file(tmp_path)])
    ranker = tiny_ranker()
    plain = score_rows(ranker, rows, device="cpu", precision="fp32")
    ranker.add_lm_term(LMTerm(str(tiny_lm)))
    fresh = score_rows(ranker, rows, device="cpu", precision="fp32")  # an untrained term adds nothing
    for role in plain:
        np.testing.assert_array_equal(fresh[role], plain[role])
    config = TrainConfig(epochs=3, batch_size=4, lr=3e-3, val_ratio=0.25, freeze_encoder=True, save_encoder=True,
                         device="cpu", encode_precision="fp32")
    seen = []
    train(ranker, rows, config, out=tmp_path / "model", progress=seen.append)
    assert "lm" in {p.phase for p in seen}
    term = ranker.lm_term
    texts = [(r.instruction, t) for r in rows for t in r.responses.values()]
    nll = response_nll(load_language_model(str(tiny_lm), "cpu", "fp32"), *zip(*texts), max_tokens=term.max_tokens,
                       copy_span=term.copy_span, min_tokens=term.min_tokens, count_end=term.count_end)
    np.testing.assert_allclose([ranker.known_nll[t] for t in texts], nll, rtol=1e-5)
    train_nll = [ranker.known_nll[(r.instruction, t)] for r in rows for t in r.responses.values()]
    assert term.std > 0 and min(train_nll) <= term.mean <= max(train_nll)
    assert ranker.lm_weight.item() != 0.0, "the LM term's weight did not train"

    loaded = load_ranker(tmp_path / "model")
    assert loaded.lm_term == term and loaded.lm_weight.item() == pytest.approx(ranker.lm_weight.item())
    assert not loaded.known_nll  # a loaded ranker measures with its LM afresh
    expected = score_rows(ranker, rows, device="cpu", precision="fp32")
    got = score_rows(loaded, rows, device="cpu", precision="fp32")
    for role in expected:
        np.testing.assert_allclose(got[role], expected[role], rtol=1e-4, atol=1e-4)

    # The term is exactly -weight * standardised NLL on top of the SCAR head's score.
    with torch.no_grad():
        loaded.lm_weight.fill_(0.0)
    head_only = score_rows(loaded, rows, device="cpu", precision="fp32")
    with torch.no_grad():
        loaded.lm_weight.fill_(2.0)
    weighted = score_rows(loaded, rows, device="cpu", precision="fp32")
    direct_nll = response_nll(loaded.language_model(torch.device("cpu"), torch.float32),
                              [r.instruction for r in rows], [r.responses["direct"] for r in rows], term.max_tokens,
                              term.copy_span, term.min_tokens, term.count_end)
    np.testing.assert_allclose(weighted["direct"] - head_only["direct"], -2.0 * (direct_nll - term.mean) / term.std,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ScarError, match="LM term"):
        loaded.head(torch.zeros(1, 32), torch.zeros(1, 32), torch.zeros(1, 32))

    # A term saved before count_end (then min_tokens, then copy_span) existed was trained without that
    # rule, and keeps it off.
    config_file = tmp_path / "model" / "config.json"
    saved = json.loads(config_file.read_text())
    assert saved["lm_term"]["copy_span"] == term.copy_span == 4 and saved["lm_term"]["min_tokens"] == 4
    assert saved["lm_term"]["count_end"] is term.count_end is True
    del saved["lm_term"]["count_end"]
    config_file.write_text(json.dumps(saved))
    assert load_ranker(tmp_path / "model").lm_term.count_end is False
    del saved["lm_term"]["min_tokens"]
    config_file.write_text(json.dumps(saved))
    older = load_ranker(tmp_path / "model").lm_term
    assert older.min_tokens is None and older.copy_span == 4 and older.count_end is False
    del saved["lm_term"]["copy_span"]
    config_file.write_text(json.dumps(saved))
    assert load_ranker(tmp_path / "model").lm_term.copy_span is None


def test_train_command_adds_an_lm_term(tmp_path, tiny_checkpoint, tiny_lm, capsys):
    path = rows_file(tmp_path, n=8)
    assert main(["train", path, "--init", str(tiny_checkpoint), "--lm-surprisal", str(tiny_lm), "--freeze-encoder",
                 "--save-encoder", "--out", str(tmp_path / "lm"), "--epochs", "1", "--device", "cpu", "--batch-size", "4"]) == 0
    saved = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert saved["lm_term"]["lm"] == str(tiny_lm) and saved["lm_term"]["std"] > 0
    plain = json.loads((tiny_checkpoint / "config.json").read_text())
    assert plain["lm_term"] is None
    capsys.readouterr()
    assert main(["train", path, "--init", str(tmp_path / "lm"), "--lm-surprisal", "smollm2",
                 "--out", str(tmp_path / "x"), "--epochs", "1", "--device", "cpu"]) == 2
    assert "already has an LM term" in capsys.readouterr().err
    assert main(["train", path, "--init", str(tmp_path / "lm"), "--lm-max-tokens", "128",
                 "--out", str(tmp_path / "x"), "--epochs", "1", "--device", "cpu"]) == 2
    assert "cannot change to 128" in capsys.readouterr().err
    assert main(["train", path, "--lm-max-tokens", "128", "--out", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert "needs --lm-surprisal" in capsys.readouterr().err


def test_predicted_lm_term_learns_the_nll_and_scores_without_the_lm(tmp_path, tiny_lm, monkeypatch):
    """--predict-lm: the head learns to predict the LM's standardised NLL, and scoring never loads the LM;
    the known NLLs go to the cache file, from which a second run takes them without the LM."""
    import scar_core.ranker as ranker_module
    from scar_core.score import score_pairs
    from scar_core.train import distil_loss, measure_lm, start_ranker

    rows = read_training_rows([rows_file(tmp_path)])
    cache = tmp_path / "nll.jsonl"
    # one epoch: the best epoch is chosen by validation accuracy, which these easy rows max out at once
    config = TrainConfig(epochs=1, batch_size=1, lr=3e-2, val_ratio=0.25, freeze_encoder=True, save_encoder=True,
                         device="cpu", encode_precision="fp32", nll_cache=str(cache))
    ranker = tiny_ranker()
    ranker.add_lm_term(ranker_module.LMTerm(str(tiny_lm), predicted=True))
    # The tiny LM's NLLs mean nothing; stand in NLLs that follow the style, as a real LM's do.
    level = {"human": 4.0, "referenced": 3.0, "direct": 2.0}
    ranker.known_nll.update({(r.instruction, t): level[role] + 0.1 * len(t) / 100
                             for r in rows for role, t in r.responses.items()})
    measure_lm(ranker, rows, range(len(rows)), TrainConfig(**{**config.__dict__, "nll_cache": None}))
    untrained = distil_loss(ranker, _features_outputs(ranker, rows), rows).item()
    train(ranker, rows, config, out=tmp_path / "model")
    trained = distil_loss(ranker, _features_outputs(ranker, rows), rows).item()
    assert trained < 0.5 * untrained, (untrained, trained)

    measured = dict(ranker.known_nll)
    lines = cache.read_text().splitlines()
    assert json.loads(lines[0])["lm_term"]["lm"] == str(tiny_lm) and len(lines) == 1 + len(measured)

    def no_lm(*_args, **_kwargs):
        raise AssertionError("the language model was loaded")

    monkeypatch.setattr(ranker_module, "load_language_model", no_lm)
    loaded = load_ranker(tmp_path / "model")
    assert loaded.lm_term.predicted and not loaded.runs_lm
    scores = score_pairs(loaded, [r.instruction for r in rows], [r.responses["direct"] for r in rows],
                         device="cpu", precision="fp32")
    with torch.no_grad():
        loaded.lm_weight.fill_(0.0)
    head_only = score_pairs(loaded, [r.instruction for r in rows], [r.responses["direct"] for r in rows],
                            device="cpu", precision="fp32")
    np.testing.assert_allclose(scores.score - head_only.score, scores.lm_part, rtol=1e-4, atol=1e-5)
    z = (scores.lm_nll - loaded.lm_term.mean) / loaded.lm_term.std
    np.testing.assert_allclose(scores.lm_part, -ranker.lm_weight.item() * z, rtol=1e-4, atol=1e-5)

    # A second training run reads every NLL from the cache: the LM is never loaded.
    again = start_ranker(str(tmp_path / "model"))
    train(again, rows, TrainConfig(**{**config.__dict__, "epochs": 1}))
    assert again.known_nll.keys() == measured.keys()
    other = tmp_path / "other.jsonl"
    other.write_text(lines[0].replace('"max_tokens": 256', '"max_tokens": 128') + "\n")
    with pytest.raises(ScarError, match="other.jsonl: measured with LM term settings"):
        train(start_ranker(str(tmp_path / "model")), rows, TrainConfig(**{**config.__dict__, "nll_cache": str(other)}))


def _features_outputs(ranker, rows):
    from scar_core.train import _cached_outputs

    features = encode_features(ranker, rows, device="cpu", precision="fp32")
    with torch.no_grad():
        return _cached_outputs(ranker, features, list(range(len(rows))), "cpu", rows)


def test_train_command_predict_lm_needs_an_lm_term(tmp_path, tiny_checkpoint, capsys):
    path = rows_file(tmp_path, n=8)
    assert main(["train", path, "--init", str(tiny_checkpoint), "--predict-lm", "--out", str(tmp_path / "x"),
                 "--epochs", "1", "--device", "cpu"]) == 2
    assert "needs --lm-surprisal" in capsys.readouterr().err
