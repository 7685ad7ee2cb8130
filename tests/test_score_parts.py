"""The per-example diagnostics table: the score's parts add up to it in `score`'s JSON, in memory and
through the store, and in the store itself; one set of keys everywhere; the dominant-part rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from db import open_store, runs
from scar_core.cli import main
from tests.conftest import style_pool
from scar_core.diagnostics.table import (COLUMNS, PART_LABELS, PARTS, dominance_note, dominant_part, part_shares,
                                         parts_equation, score_parts)


@pytest.fixture
def pool(tmp_path):
    return style_pool(tmp_path, rows=10, every=3)


@pytest.fixture
def lm_checkpoint(tmp_path, tiny_lm):
    """A tiny ranker with an LM term whose part is large next to the head's."""
    from scar_core.ranker import LMTerm
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=0.05))
    ranker.lm_weight.data.fill_(5.0)
    return ranker.save(tmp_path / "lm-ranker")


def score_lines(pool, checkpoint, out, *extra) -> list[dict]:
    assert main(["score", str(pool), "--out", str(out), "--model", str(checkpoint), "--device", "cpu",
                 "--precision", "fp32", *extra]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_parts_add_up(figures: list[dict], with_lm: bool) -> None:
    for row in figures:
        parts = score_parts(row)
        assert list(parts) == list(PARTS if with_lm else PARTS[:3])
        assert sum(parts.values()) == pytest.approx(row["score"], abs=1e-4)
        assert parts["baseline"] == row["baseline"]  # stored, not derived


@pytest.mark.parametrize("with_lm", [False, True])
def test_parts_add_up_to_the_score_in_json_and_in_the_store(pool, tiny_checkpoint, lm_checkpoint, tmp_path,
                                                            with_lm):
    checkpoint = lm_checkpoint if with_lm else tiny_checkpoint
    db = tmp_path / "store.db"
    memory = score_lines(pool, checkpoint, tmp_path / "memory.jsonl")
    stored = score_lines(pool, checkpoint, tmp_path / "stored.jsonl", "--db", str(db))
    for lines in (memory, stored):
        assert_parts_add_up(lines, with_lm)
        keys = [k for k in lines[0] if k in COLUMNS]
        assert keys == [c for c in COLUMNS if c in keys]  # the table's order
    assert set(memory[0]) == set(stored[0])  # the same keys with and without the store
    assert ("lm_nll" in memory[0]) == with_lm

    store = open_store(str(db))
    (run,) = runs.list_runs(store)
    in_store = runs.run_diagnostics(store, run.id)
    scores = runs.run_results(store, run.id)["score"]
    assert_parts_add_up([{"score": float(s), **d} for s, d in zip(scores, in_store)], with_lm)
    assert set(in_store[0]) | {"score"} == {k for k in memory[0] if k in COLUMNS}


def test_a_part_that_carries_the_ranking_is_named(lm_checkpoint, pool, tmp_path, capsys):
    lines = score_lines(pool, lm_checkpoint, tmp_path / "scores.jsonl")
    parts = {k: [r[k] for r in lines] for k in PARTS}
    assert dominant_part(parts)[0] == "lm_contribution"
    assert PART_LABELS["lm_contribution"] in dominance_note(parts)
    report = tmp_path / "report.json"
    assert main(["diagnose", str(pool), "--out", str(report), "--model", str(lm_checkpoint), "--device", "cpu",
                 "--precision", "fp32"]) == 0
    assert json.loads(report.read_text())["breakdown"]["note"] == dominance_note(parts)
    assert f"note: {dominance_note(parts)}" in capsys.readouterr().err


def test_dominant_part_rule():
    rng = np.random.default_rng(0)
    lf, is_ = rng.normal(0, 1, 100), rng.normal(0, 1, 100)
    assert dominant_part({"lf_contribution": lf, "is_contribution": is_}) is None
    assert dominance_note({"lf_contribution": lf, "is_contribution": is_}) is None
    big = {"baseline": np.full(100, 50.0), "lf_contribution": lf, "is_contribution": 0.1 * is_,
           "lm_contribution": np.full(100, np.nan)}  # the baseline and an absent LM term do not count
    name, share = dominant_part(big)
    assert name == "lf_contribution" and share == pytest.approx(1 / 1.1, rel=0.05)
    assert sum(part_shares(big).values()) == pytest.approx(1.0)
    # until the form and surprisal parts are computed there is nothing to compare
    assert part_shares({"lf_contribution": np.full(3, np.nan), "is_contribution": np.full(3, np.nan),
                        "lm_contribution": np.ones(3)}) == {}


def test_every_part_is_named_in_words_and_old_results_get_a_baseline():
    assert set(PART_LABELS) == set(PARTS) and all(" " in label for label in PART_LABELS.values())
    assert score_parts({"score": 1.0, "lf_contribution": 0.25, "is_contribution": -0.5}) == {
        "baseline": 1.25, "lf_contribution": 0.25, "is_contribution": -0.5}
    assert score_parts({"score": 1.0, "lm_contribution": 0.5}) == {}  # breakdown not computed yet
    assert parts_equation({"baseline": 1.25, "lf_contribution": 0.25, "is_contribution": -0.5}, 1.0) == (
        "1.2500 + 0.2500 − 0.5000 = 1.0000")


def test_explore_shows_the_parts_in_words_and_the_part_that_carries_the_ranking(pool, lm_checkpoint, tmp_path,
                                                                                monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP, texts

    db = tmp_path / "store.db"
    lines = score_lines(pool, lm_checkpoint, tmp_path / "scores.jsonl", "--db", str(db))
    monkeypatch.setenv("SCAR_DB_URL", f"sqlite:///{db}")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    best = max(lines, key=lambda r: r["score"])  # the example view opens on the best row
    shown = {m.label: m.value for m in at.metric}
    assert [shown[PART_LABELS[k]] for k in PARTS] == [f"{best[k]:.4f}" for k in PARTS]
    assert any(c.startswith("The score is the sum of these parts") and c.endswith(f"= {best['score']:.4f}")
               for c in texts(at.caption))
    assert [i.value for i in at.info] == [dominance_note({k: [r[k] for r in lines] for k in PARTS})]


def test_a_predicted_lm_term_adds_up_and_explore_says_it_is_estimated(pool, tiny_lm, tmp_path, monkeypatch):
    """A distilled (predicted) LM term is a part of the score like a measured one, and the example view
    says its NLL is the ranker's own estimate."""
    from streamlit.testing.v1 import AppTest

    from scar_core.ranker import LMTerm, has_predicted_lm_term
    from tests.conftest import tiny_ranker
    from tests.test_app import APP, texts

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=0.05, predicted=True))
    ranker.lm_weight.data.fill_(5.0)
    checkpoint = ranker.save(tmp_path / "predicted")
    assert has_predicted_lm_term(checkpoint) and not has_predicted_lm_term(tmp_path / "missing")
    db = tmp_path / "store.db"
    lines = score_lines(pool, checkpoint, tmp_path / "scores.jsonl", "--db", str(db))
    assert_parts_add_up(lines, with_lm=True)
    assert all(np.isfinite(r["lm_nll"]) for r in lines)
    monkeypatch.setenv("SCAR_DB_URL", f"sqlite:///{db}")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    best = max(lines, key=lambda r: r["score"])
    assert any(f"its own encoder estimates this response's NLL at {best['lm_nll']:.3f}" in c for c in texts(at.caption))
