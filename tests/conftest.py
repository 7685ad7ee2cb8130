"""Shared fixtures: tiny randomly initialised rankers (no downloads) and paths to shared data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# "auto" is torch in every test, whatever this CPU would choose (a CPU with VNNI and no bf16 takes int8,
# scar_core.engine): tests comparing a path with torch's scores then hold on every machine; the engine
# tests ask for int8 by name or unset this.
os.environ["SCAR_ENGINE"] = "torch"
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def tiny_ranker(seed: int = 0, hidden: int = 32, linear: int = 16):
    """A StyleRanker over a 2-layer BERT with random weights and the bundled MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from scar_core.encoders import bundled_encoder_path
    from scar_core.ranker import StyleRanker

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=512)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_encoder_path()), local_files_only=True)
    return StyleRanker(BertModel(config), tokenizer, linear_dim=linear, encoder_name="tiny-bert").eval()


@pytest.fixture
def ranker():
    return tiny_ranker()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A saved tiny ranker in this project's format."""
    path = tmp_path_factory.mktemp("tiny_ranker")
    tiny_ranker().save(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """A folder holding a 2-layer GPT-2 with random weights and the bundled MiniLM tokenizer: a causal LM
    that load_language_model can name, for the ranker's LM term (its NLLs vary per text, meaning nothing)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from scar_core.encoders import bundled_encoder_path

    path = tmp_path_factory.mktemp("tiny_lm")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=512)).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(bundled_encoder_path()), local_files_only=True).save_pretrained(path)
    return path


def style_pool(folder: Path, rows: int = 12, every: int = 2) -> Path:
    """An Alpaca JSON pool mixing two styles: a numbered how-to (rows not divisible by `every`) and a
    chatty first-person answer."""
    data = [{"instruction": f"Question {i}: how do I do task {i}?",
             "output": ("Sure! Here is how:\n\n1. First step.\n2. Second step.\n" if i % every else
                        f"You could try doing it slowly, I think. It took me {i} days.")}
            for i in range(rows)]
    path = folder / "pool.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def small_pool(tmp_path) -> Path:
    return style_pool(tmp_path)


def postgres_url() -> str:
    """The test PostgreSQL server .ci/run starts ($SCAR_TEST_POSTGRES_URL); skip without one, fail in CI."""
    url = os.environ.get("SCAR_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but SCAR_TEST_POSTGRES_URL is unset: .ci/run should have started PostgreSQL")
        pytest.skip("SCAR_TEST_POSTGRES_URL is unset (run the suite through .ci/run to test PostgreSQL)")
    return url


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test when the shared folder is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"needs ../shared/data/{relative} (shared data is not part of a fresh clone)")
    return path


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store, also named in $SCAR_DB_URL so an app under AppTest opens the same one."""
    from db.store import open_store

    url = f"sqlite:///{tmp_path / 'studio.db'}"
    monkeypatch.setenv("SCAR_DB_URL", url)
    return open_store(url)


def score_file(store, path: Path, model: Path, *, lenient: bool = False, mapped: bool = False):
    """Import `path` and score it with `model` in this process (the job a worker runs), then map it
    when `mapped`; the finished scoring run."""
    from db import runs
    from scar_core.jobs import datasets as importing
    from scar_core.jobs.map import submit_map
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score

    dataset = importing.import_file(store, path, lenient=lenient)
    run = submit_score(store, dataset.id, model=str(model), device="cpu", precision="fp32", launch=False)
    assert run_job(store, run.job_id).status == "done"
    if mapped:
        assert run_job(store, submit_map(store, run.id, launch=False).id).status == "done"
    return runs.get_run(store, run.id)


def chooser(at, key: str):
    """The page's remembered selectbox for `key` ("run", "dataset"), whose widget key names the value
    it was drawn with (pages/shared.py, _remembered)."""
    return next(s for s in at.selectbox if (s.key or "").startswith(f"_{key}-"))


def fragment_names(monkeypatch, *functions: str) -> dict[str, list[str]]:
    """The name Streamlit gives each of these fragment functions at each run that draws it. A fragment is
    named by its place on the page, and a click aimed at a name the last full run did not draw is dropped
    with only a log line: what a page draws above a fragment must not move it (test_explore's labelling
    fragment test)."""
    from streamlit.runtime import fragment

    named = {f: [] for f in functions}
    make = fragment._make_fragment_identity

    def recording(func, **kwargs):
        identity = make(func, **kwargs)
        if func.__name__ in named:
            named[func.__name__].append(identity.fragment_id)
        return identity

    monkeypatch.setattr(fragment, "_make_fragment_identity", recording)
    return named
