"""Scoring engines (scar_core.engine): the int8 engine against the torch reference on a tiny random
model, every command and job scoring through the one interface, the engine recorded with the run and
the manifest, and the device and precision resolution for Apple GPUs with MPS availability mocked."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scar_core import engine as engines
from scar_core.engine import Int8Engine, TorchEngine, load_int8_language_model
from scar_core.lm import load_language_model, response_nll

pytest.importorskip("ctranslate2")

INSTRUCTIONS = [f"Question {i}: how do I handle case {i} in a long list of steps?" for i in range(12)]
RESPONSES = [("First do this, then that. " * (1 + i % 5)) + f"Answer {i} ends here." for i in range(12)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Converted models go to a fresh cache folder per test, never the user's."""
    monkeypatch.setenv("SCAR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """conftest's tiny random GPT-2 with the MiniLM tokenizer, its start and end tokens inside that
    vocabulary (CTranslate2 names them in its config)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from scar_core.encoders import bundled_encoder_path

    path = tmp_path_factory.mktemp("tiny_causal_lm")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_encoder_path()), local_files_only=True)
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=512,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def lm_ranker(tiny_lm):
    from scar_core.ranker import LMTerm
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), max_tokens=256, copy_span=4, min_tokens=4, count_end=True, mean=3.0,
                              std=2.0))
    ranker.lm_weight.data.fill_(0.5)
    return ranker


def test_ctranslate2_float32_gives_the_torch_nlls(tiny_lm):
    """The per-token log-probabilities are read at the right positions: unquantised, CTranslate2's NLLs are
    torch's (an off-by-one position would move them by whole nats)."""
    settings = dict(max_tokens=256, copy_span=4, min_tokens=4, count_end=True)
    reference = response_nll(load_language_model(str(tiny_lm), "cpu", "fp32"), INSTRUCTIONS, RESPONSES, **settings)
    got = response_nll(load_int8_language_model(str(tiny_lm), "float32"), INSTRUCTIONS, RESPONSES, **settings)
    assert not np.isnan(reference).all()
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_loading_the_int8_lm_leaves_torch_s_threads_alone(tiny_lm):
    """CTranslate2's Generator sets the calling thread's OpenMP thread count to its intra_threads, and
    torch reads that count: a Generator with fewer threads would silently put the rest of scoring (the
    head, the bf16 encoder) on fewer cores (models/default/README.md, "Work side by side")."""
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_int8_language_model(str(tiny_lm))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_int8_engine_scores_within_its_tolerance_of_torch(lm_ranker, cache, monkeypatch):
    """In fp32 the encoder runs in ONNX Runtime (torch's vectors to 1e-4) and the LM term's NLLs within
    0.05 nats of fp32; each conversion happens once, then the cached files load."""
    reference = TorchEngine(lm_ranker, "cpu", "fp32").score(INSTRUCTIONS, RESPONSES)
    got = Int8Engine(lm_ranker, "cpu", "fp32").score(INSTRUCTIONS, RESPONSES)
    for field in ("v_lf", "v_is"):
        np.testing.assert_allclose(getattr(got, field), getattr(reference, field), atol=1e-4)
    for field in ("truncated_instruction", "truncated_response"):
        np.testing.assert_array_equal(getattr(got, field), getattr(reference, field))
    assert np.array_equal(np.isnan(got.lm_nll), np.isnan(reference.lm_nll))
    np.testing.assert_allclose(got.lm_nll, reference.lm_nll, atol=0.05)
    np.testing.assert_allclose(got.score, reference.score, atol=0.5 * 0.05 / 2.0 + 1e-4)  # weight 0.5, std 2
    assert not np.array_equal(got.lm_nll, reference.lm_nll)  # it did run in int8
    assert len(list((cache / "ctranslate2").iterdir())) == 1 and len(list((cache / "onnx").iterdir())) == 1

    import ctranslate2

    def refuse(*_args, **_kwargs):
        raise AssertionError("converted again")
    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", refuse)
    monkeypatch.setattr(torch.onnx, "export", refuse)
    again = Int8Engine(lm_ranker, "cpu", "fp32").score(INSTRUCTIONS, RESPONSES)
    np.testing.assert_array_equal(again.score, got.score)


def test_the_onnx_encoder_gives_torch_s_vectors_and_the_bf16_engine_keeps_torch(lm_ranker):
    """OnnxEmbed: each text alone at its own length, so its vectors are torch's padded-batch fp32 ones to
    1e-5; where bf16 is asked the int8 engine encodes in torch (faster there than ONNX Runtime's fp32)."""
    from scar_core.score import BatchEncoder

    encoder = BatchEncoder(lm_ranker, torch.device("cpu"), torch.float32)
    ids, _ = encoder.tokenize(RESPONSES, left=False)
    pooled, maxed = encoder.encode(ids, want_max=True)
    onnx_pooled, onnx_maxed = engines.OnnxEmbed(lm_ranker)(ids, True)
    np.testing.assert_allclose(onnx_pooled, pooled, atol=1e-5)
    np.testing.assert_allclose(onnx_maxed, maxed, atol=1e-5)
    assert engines.OnnxEmbed(lm_ranker)(ids[:3], False)[1] is None
    bf16 = Int8Engine(lm_ranker, "cpu", "bf16")
    bf16.prepare()
    assert bf16._embed is None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_int8_engine_scores_a_pair_alike_whatever_its_batch(lm_ranker, precision):
    """Bit for bit, as torch's engine does (scar_core.score): a pair's int8 score does not depend on the
    pairs scored with it, their order or the chunks, so the store may reuse an int8 run's rows and every
    path that scores with int8 cuts alike."""
    engine = Int8Engine(lm_ranker, "cpu", precision)
    whole = engine.score(INSTRUCTIONS, RESPONSES)
    assert not np.isnan(whole.lm_nll).all()
    halves = np.concatenate([engine.score(INSTRUCTIONS[:5], RESPONSES[:5]).score,
                             engine.score(INSTRUCTIONS[5:], RESPONSES[5:]).score])
    order = np.random.default_rng(0).permutation(len(INSTRUCTIONS))
    shuffled = np.empty(len(order))
    shuffled[order] = engine.score([INSTRUCTIONS[i] for i in order], [RESPONSES[i] for i in order]).score
    alone = [engine.score([INSTRUCTIONS[i]], [RESPONSES[i]]).score[0] for i in range(len(INSTRUCTIONS))]
    for other in (halves, shuffled, np.array(alone)):
        np.testing.assert_array_equal(other, whole.score)


def test_int8_engine_refuses_a_gpu(lm_ranker, monkeypatch):
    from scar_core.errors import ScarError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ScarError, match="int8 engine runs on the CPU"):
        Int8Engine(lm_ranker, "cuda", "fp32")


def test_int8_on_a_cpu_without_vnni_says_it_ranks_below_the_guard(lm_ranker, monkeypatch, capsys):
    """Measured with AVX2 alone (models/default/README.md): Spearman 0.990 to fp32, below the 0.995 guard.
    auto never takes int8 there; asked for outright, the engine runs and says so."""
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: False)
    Int8Engine(lm_ranker, "cpu", "fp32")
    assert "no VNNI" in capsys.readouterr().err
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    Int8Engine(lm_ranker, "cpu", "fp32")
    assert capsys.readouterr().err == ""


@pytest.fixture
def engine_calls(monkeypatch) -> list[str]:
    """Every Engine.iter_scores call, by engine name: scoring that bypassed the interface leaves none."""
    calls: list[str] = []
    for kind in (TorchEngine, Int8Engine):
        real = kind.iter_scores

        def spy(self, *args, _real=real, **kwargs):
            calls.append(self.name)
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(kind, "iter_scores", spy)
    return calls


@pytest.fixture
def lm_checkpoint(lm_ranker, tmp_path):
    return lm_ranker.save(tmp_path / "lm-ranker")


def training_rows(path):
    rows = [{"instruction": i, "human": r, "direct": r + " Done."} for i, r in zip(INSTRUCTIONS, RESPONSES)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("engine", ["torch", "int8"])
def test_every_command_and_the_job_score_through_the_engine(engine, engine_calls, lm_checkpoint, small_pool, tmp_path,
                                                            monkeypatch):
    """score (with and without a store: the app's scoring job), rank and eval each score through the engine
    they name, and record it: the run row and the manifest."""
    from db import open_store, runs
    from scar_core.cli import main

    monkeypatch.delenv("SCAR_DB_URL", raising=False)
    store = open_store(str(tmp_path / "studio.db"))

    base = ["--model", str(lm_checkpoint), "--device", "cpu", "--precision", "fp32", "--engine", engine]
    commands = {
        "score": ["score", str(small_pool), "--out", str(tmp_path / "s.jsonl"), *base],
        "score --db": ["score", str(small_pool), "--out", str(tmp_path / "d.jsonl"), "--db", store.url, *base],
        "rank": ["rank", str(small_pool), "--out", str(tmp_path / "r.jsonl"), "--ratio", "0.5", *base],
        "eval": ["eval", str(training_rows(tmp_path / "train.jsonl")), *base],
    }
    for name, argv in commands.items():
        engine_calls.clear()
        assert main(argv) == 0, name
        assert engine_calls and set(engine_calls) == {engine}, name
    assert [run.engine for run in runs.list_runs(store)] == [engine]
    manifest = json.loads((tmp_path / "r.jsonl.manifest.json").read_text())
    assert (manifest["engine"], manifest["device"], manifest["precision"]) == (engine, "cpu", "fp32")


def test_ray_actors_score_through_the_engine_they_are_given(engine_calls, lm_checkpoint):
    """A Ray actor (called in this process) scores with the in-process engine it is told."""
    from scar_core.jobs.ray import RankerActor

    actor = RankerActor(str(lm_checkpoint), None, "cpu", "fp32", None, engine="int8")
    batch = {"row": np.arange(3), "instruction": np.array(INSTRUCTIONS[:3]), "response": np.array(RESPONSES[:3]),
             "left": np.zeros(3, bool)}
    out = actor(batch)
    assert engine_calls == ["int8"] and out["score"].shape == (3,)


def test_engine_names_pick_the_engine(lm_ranker, lm_checkpoint):
    from scar_core.errors import ScarError
    from scar_core.jobs.ray import RayEngine, open_engine

    assert isinstance(open_engine(lm_ranker, str(lm_checkpoint), "int8", device="cpu"), Int8Engine)
    assert type(open_engine(lm_ranker, str(lm_checkpoint), "torch", device="cpu")) is TorchEngine
    on_ray = open_engine(lm_ranker, str(lm_checkpoint), "ray:int8", precision="fp32")
    assert isinstance(on_ray, RayEngine) and (on_ray.name, on_ray.device) == ("int8", "ray:cpu")
    assert open_engine(lm_ranker, str(lm_checkpoint), "ray").name == "torch"
    with pytest.raises(ScarError, match="unknown engine"):
        open_engine(lm_ranker, str(lm_checkpoint), "onnx")


def test_auto_takes_int8_only_where_it_is_the_default(lm_ranker, monkeypatch):
    """int8 where it is the default, on a CPU with VNNI and without native bf16, for a ranker running its LM."""
    monkeypatch.delenv(engines.AUTO_ENGINE_VARIABLE)  # the suite pins torch (conftest)
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    monkeypatch.setattr(engines, "cpu_supports_bf16", lambda: False)
    assert engines.INT8_BY_DEFAULT  # it met the accuracy guard (models/default/README.md)
    assert engines.resolve_engine("auto", True, "cpu") == "int8"
    assert engines.resolve_engine("auto", False, "cpu") == "torch"  # no LM term: nothing for int8 to do
    monkeypatch.setattr(engines, "cpu_supports_bf16", lambda: True)  # torch's bf16 is as fast there
    assert engines.resolve_engine("auto", True, "cpu") == "torch"
    monkeypatch.setattr(engines, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: False)
    assert engines.resolve_engine("auto", True, "cpu") == "torch"
    monkeypatch.setattr(engines, "INT8_BY_DEFAULT", False)
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    assert engines.resolve_engine("auto", True, "cpu") == "torch"


def test_scar_engine_names_what_auto_means_on_this_machine(monkeypatch):
    """$SCAR_ENGINE overrides the CPU's choice for "auto" (app, workers and CLI alike), never a named engine,
    and never puts int8 on a GPU."""
    from scar_core.errors import ScarError

    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: False)
    monkeypatch.setenv(engines.AUTO_ENGINE_VARIABLE, "int8")
    assert engines.resolve_engine("auto", True, "cpu") == "int8"
    assert engines.resolve_engine("torch", True, "cpu") == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engines.resolve_engine("auto", True, "cuda") == "torch"
    monkeypatch.setenv(engines.AUTO_ENGINE_VARIABLE, "onnx")
    with pytest.raises(ScarError, match=r"\$SCAR_ENGINE is 'onnx'; set it to torch or int8"):
        engines.resolve_engine("auto", True, "cpu")


@pytest.fixture
def mps(monkeypatch):
    """torch reports an Apple GPU (no CUDA)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


def test_auto_picks_an_apple_gpu_in_fp16(mps):
    from scar_core.device import resolve

    assert resolve("auto", "auto") == (torch.device("mps"), torch.float16)
    assert resolve("mps", "fp32") == (torch.device("mps"), torch.float32)


def test_bf16_on_an_apple_gpu_is_refused(mps):
    from scar_core.device import resolve
    from scar_core.errors import ScarError

    with pytest.raises(ScarError, match="Apple GPUs"):
        resolve("mps", "bf16")


def test_mps_without_one_falls_back_to_the_cpu_with_a_message(monkeypatch, capsys):
    from scar_core.device import resolve

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve("mps", "fp32") == (torch.device("cpu"), torch.float32)
    assert "scoring on the CPU instead" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_engine_on_a_gpu_scores_a_pair_alike_whatever_its_batch(lm_ranker):
    """On CUDA in bf16: a pair scores alike alone and among the others (bit-identity is measured on CPUs
    only: GPU kernels may choose otherwise), and the pairs rank as the CPU's fp32 ranks them."""
    from scipy.stats import spearmanr

    gpu = TorchEngine(lm_ranker, "cuda", "bf16")
    whole = gpu.score(INSTRUCTIONS, RESPONSES)
    alone = gpu.score(INSTRUCTIONS[:1], RESPONSES[:1])
    np.testing.assert_allclose(alone.score, whole.score[:1], atol=2e-2)
    cpu = TorchEngine(lm_ranker, "cpu", "fp32").score(INSTRUCTIONS, RESPONSES)
    assert spearmanr(whole.score, cpu.score)[0] > 0.99
