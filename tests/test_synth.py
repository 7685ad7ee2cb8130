"""Synthesis pipeline: judge-reply parsing, the call cache and resuming, the local back end end to end,
and the OpenAI-compatible back end against a real `transformers serve` process on loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scar_core.example import Example
from scar_core.synth.cache import CallCache
from scar_core.synth.client import BackendError, Client, as_messages
from scar_core.synth.judge import parse_judgement
from scar_core.synth.pipeline import synthesize
from scar_core.synth.prompts import JUDGE, PROMPTS, describe, strip_echoed_heading
from scar_core.training_data import read_training_rows

PAIRS = [
    Example("What is the capital of France?", "Paris is the capital of France."),
    Example("Name a primary colour.", "Red is a primary colour."),
    Example("How many legs does a spider have?", "A spider has eight legs."),
    Example("What gas do plants take in for photosynthesis?", "Plants take in carbon dioxide."),
]


@pytest.mark.parametrize("reply, expected", [
    ("Helpfulness: 7\nCorrectness: 8", (7, 8)),
    ("**Helpfulness**: 6/9\n**Correctness** - 8 out of 9", (6, 8)),
    ("Helpfulness score of 6 out of 10, correctness 10/10", (5.4, 9)),
    ("Helpful: seven. Accurate: eight.", (7, 8)),
    ('Here you go: {"helpfulness": 3, "correctness": "4"}', (3, 4)),
    ("7, 8", (7, 8)),
    ("Helpfulness (0-9): 4\nCorrectness (0 to 9): 3", (4, 3)),
    ("Helpfulness: 0 = ignores the request. Looking again, Helpfulness: 5\nCorrectness: 6", (5, 6)),
    ("helpfulness = 7.5; correctness = 2", (7.5, 2)),
    ("The answer is correct. Helpfulness: 8\nCorrectness: 9", (8, 9)),
    ("The helpfulness is high and correctness: 3", (None, 3)),
    ("Helpfulness: 12\nCorrectness: 5", (None, 5)),
    ("Helpfulness: 7\nCorrectness:", (7, None)),
    ("I think this answer is quite good overall.", (None, None)),
    ("Helpfulness - N/A. Correctness - unclear.", (None, None)),
    ("", (None, None)),
])
def test_judge_reply_styles(reply, expected):
    verdict = parse_judgement(reply)
    assert (verdict.helpfulness, verdict.correctness) == expected
    assert verdict.empty == (expected == (None, None))


class Scripted(Client):
    """A deterministic stand-in LLM for pipeline bookkeeping tests: it answers from the prompt's text
    (a judge reply naming scores from the response's length, an unreadable one for the spider's human
    answer), counts
    every call, and can fail after a number of calls, as a server that goes away does."""

    name, model = "scripted", "rules"

    def __init__(self, fail_after: int | None = None):
        self.fail_after, self.prompts = fail_after, []

    def generate(self, prompt, temperature=0.0, max_tokens=512):
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise BackendError("server went away")
        text = as_messages(prompt)[-1]["content"]
        self.prompts.append(text)
        if text.startswith(JUDGE.user.split("{")[0]):
            answer = text.split("Answer:\n", 1)[1].split("\n\nReply with", 1)[0]
            return "no idea" if answer == PAIRS[2].response else f"Helpfulness: {len(answer) % 10}\nCorrectness: 6"
        return ("Draft answer:\nRewritten: " if "Draft answer" in text else "Own answer: ") + text[-40:]


def test_pipeline_rows_scores_and_unreadable_judgements(tmp_path):
    out = tmp_path / "train.jsonl"
    summary = synthesize(PAIRS, Scripted(), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instruction"] for r in rows] == [p.instruction for p in PAIRS]
    # the echoed prompt heading is gone from the referenced responses
    assert all(r["referenced"].startswith("Rewritten: ") and r["direct"].startswith("Own answer: ") for r in rows)
    assert rows[0]["human_helpfulness"] == len(PAIRS[0].response) % 10 and rows[0]["human_correctness"] == 6
    spider = rows[2]
    assert spider["human_helpfulness"] is None and spider["human_correctness"] is None
    assert summary.judge_replies == 12 and summary.judge_unparseable == 1 and summary.judge_partial == 0
    assert summary.unparseable_examples == ["no idea"]
    trained = read_training_rows([out])
    assert "human" not in trained[2].quality and trained[0].quality["human"] == (rows[0]["human_helpfulness"] + 6) / 2


def test_interrupted_run_resumes_from_cache_without_repeating_calls(tmp_path):
    out = tmp_path / "train.jsonl"
    first = Scripted(fail_after=5)
    with pytest.raises(BackendError):
        synthesize(PAIRS, first, out)
    assert not out.exists()
    cache = CallCache(tmp_path / "train.jsonl.cache.sqlite")
    assert len(cache) == 5
    cache.close()
    second = Scripted()
    summary = synthesize(PAIRS, second, out)
    total = 2 * len(PAIRS) + 3 * len(PAIRS)
    assert summary.calls == total and summary.cached_calls == 5 and summary.new_calls == total - 5
    assert len(first.prompts) + len(second.prompts) == total
    assert not set(first.prompts) & set(second.prompts)
    again = synthesize(PAIRS, Scripted(fail_after=0), out)
    assert again.new_calls == 0 and again.cached_calls == total


def test_prompts_are_shown_and_fill_in():
    text = describe()
    for prompt in PROMPTS.values():
        assert prompt.user in text
    messages = JUDGE.messages(instruction="Q?", response="A.")
    assert messages[0]["role"] == "system" and "Q?" in messages[-1]["content"] and "A." in messages[-1]["content"]


@pytest.mark.parametrize("reply, expected", [
    ("Draft answer:\nParis is the capital.", "Paris is the capital."),
    ("**Answer:** Paris", "Paris"),
    ("Answers vary: it depends.", "Answers vary: it depends."),
    ("Paris. Answer: yes", "Paris. Answer: yes"),
])
def test_echoed_heading_is_removed_only_at_the_start(reply, expected):
    assert strip_echoed_heading(reply) == expected


def test_cli_shows_prompts(capsys):
    from scar_core.cli import main

    assert main(["synth", "--show-prompts"]) == 0
    assert capsys.readouterr().out == describe()


# --- real model --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    from scar_core.synth.local_backend import LocalBackend

    return LocalBackend(batch_size=4)


@pytest.mark.slow
def test_local_backend_end_to_end(smollm2, ranker, tmp_path):
    from scar_core.train import TrainConfig, train

    out = tmp_path / "train.jsonl"
    summary = synthesize(PAIRS[:2], smollm2, out, max_tokens=32, judge_max_tokens=12)
    rows = read_training_rows([out])
    assert len(rows) == 2 and summary.new_calls == summary.calls == 4 + summary.judge_replies
    assert all(set(r.responses) == {"human", "referenced", "direct"} for r in rows)
    assert all(0 <= q <= 9 for r in rows for q in r.quality.values())
    assert summary.judge_replies == 6 - summary.empty_responses
    result = train(ranker, rows, TrainConfig(epochs=1, batch_size=1, val_ratio=0.5, quality_mode="none"),
                   out=tmp_path / "ranker")
    assert result.best_epoch == 1 and (tmp_path / "ranker").is_dir()


class Server:
    """`transformers serve` (Hugging Face's OpenAI-compatible server) on a free loopback port."""

    def __init__(self, model_dir: Path, log: Path):
        self.model_dir, self.log, self.proc = model_dir, log, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "transformers"), "serve", str(self.model_dir), "--host",
                   "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--dtype", "float32"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(command, stdout=open(self.log, "a"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"transformers serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        pytest.fail("transformers serve did not open its port within 300 s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server(smollm2, tmp_path_factory):
    """The bundled SmolLM2 GGUF, dequantised into a plain model folder (transformers 5.23's server
    cannot load this GGUF directly: its config carries no architecture name), served on loopback."""
    folder = tmp_path_factory.mktemp("smollm2_hf")
    lm, quantizer = smollm2.lm, smollm2.lm.hf_quantizer
    lm.hf_quantizer = None
    config_quantization = lm.config.__dict__.pop("quantization_config", None)
    try:
        lm.save_pretrained(folder)
        smollm2.tokenizer.save_pretrained(folder)
    finally:
        lm.hf_quantizer = quantizer
        if config_quantization is not None:
            lm.config.quantization_config = config_quantization
    running = Server(folder, folder / "server.log")
    running.start()
    yield running
    running.kill()


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(server, smollm2, tmp_path):
    from scar_core.synth.openai_backend import OpenAIBackend

    backend = OpenAIBackend(server.url, str(server.model_dir), api_key_env="SCAR_TEST_NO_KEY", concurrency=2)
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert backend.generate(question, max_tokens=16) == smollm2.generate(question, max_tokens=16)
    out = tmp_path / "train.jsonl"
    summary = synthesize(PAIRS[:2], backend, out, max_tokens=24, judge_max_tokens=12)
    backend.close()
    rows = read_training_rows([out])
    assert len(rows) == 2 and all({"referenced", "direct"} <= set(r.responses) for r in rows)
    assert summary.new_calls == summary.calls == 4 + summary.judge_replies


@pytest.mark.slow
def test_server_dies_mid_run_and_the_run_resumes(server, tmp_path):
    from scar_core.synth.openai_backend import OpenAIBackend

    pairs, out = PAIRS[:3], tmp_path / "train.jsonl"

    def kill_after_two(progress) -> None:
        if progress.done - progress.cached == 2 and server.proc.poll() is None:
            server.kill()

    flaky = OpenAIBackend(server.url, str(server.model_dir), concurrency=1, max_retries=2, backoff=0.2)
    with pytest.raises(BackendError, match="resumes"):
        synthesize(pairs, flaky, out, judge=False, progress=kill_after_two, max_tokens=16)
    flaky.close()
    cache = CallCache(tmp_path / "train.jsonl.cache.sqlite")
    finished = len(cache)
    cache.close()
    assert finished == 2 and not out.exists()

    server.start()
    backend = OpenAIBackend(server.url, str(server.model_dir), concurrency=2)
    summary = synthesize(pairs, backend, out, judge=False, max_tokens=16)
    backend.close()
    assert summary.cached_calls == 2 and summary.new_calls == 2 * len(pairs) - 2
    cache = CallCache(tmp_path / "train.jsonl.cache.sqlite")
    assert len(cache) == 2 * len(pairs)
    cache.close()
    rows = read_training_rows([out])
    assert [r.instruction for r in rows] == [p.instruction for p in pairs]
    assert all({"referenced", "direct"} <= set(r.responses) for r in rows)
