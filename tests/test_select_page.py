"""The Select page's cut controls (AppTest): the number box beside each slider moves with it both ways,
the rows just either side of the cut line are shown, and a point of the threshold curve read as each
rule's value (what a click on the curve sets)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from db import runs
from scar_core.errors import ScarError
from scar_core.jobs import labelling
from scar_core.select import around_cut, cut, rule_value_at, select
from tests.conftest import fragment_names, score_file, style_pool
from tests.test_app import app, texts


@pytest.fixture
def scored14(store, tiny_checkpoint, tmp_path):
    """A 14-pair pool scored by the tiny ranker."""
    return score_file(store, style_pool(tmp_path, rows=14), tiny_checkpoint)


def kept(at) -> str:
    return {m.label: m.value for m in at.metric}["Kept"]


def typed(at, rule: str, value: float):
    """A value typed into the rule's number box and set (Enter or Set submits the box's form)."""
    at.number_input(key=f"{rule}_number").set_value(value)
    return next(b for b in at.button if b.label == "Set").click().run()


def test_slider_and_number_box_move_together(store, scored14):
    at = app("select")
    assert at.number_input(key="ratio_number").value == at.slider(key="ratio").value == 0.3
    at.slider(key="ratio").set_value(0.5).run()
    assert at.number_input(key="ratio_number").value == 0.5 and kept(at) == "7 of 14"
    typed(at, "ratio", 0.15)
    assert at.slider(key="ratio").value == 0.15 and kept(at) == "3 of 14"
    at.radio(key="rule").set_value("topk").run()
    typed(at, "topk", 9)
    assert at.slider(key="topk").value == 9 and kept(at) == "9 of 14"
    at.radio(key="rule").set_value("threshold").run()
    ids, scores = runs.run_scores(store, scored14.id)
    third = float(np.sort(scores)[::-1][2])
    typed(at, "threshold", third)
    assert at.slider(key="threshold").value == pytest.approx(third) and kept(at) == "3 of 14"
    assert not at.exception and not at.error, texts(at.error)


def test_the_number_box_s_older_value_never_moves_the_cut(store, scored14):
    """A browser sends every widget's value with each change, so while the page reruns after a slider
    key press the number box's older value travels with the next message. Only a value set in the box
    (Enter or Set) is a choice: an older one arriving alone, or beside a slider move, changes nothing."""
    at = app("select")
    at.slider(key="ratio").set_value(0.5).run()
    at.number_input(key="ratio_number").set_value(0.31)  # what the box showed before the last rerun arrived
    at.run()
    assert at.slider(key="ratio").value == at.number_input(key="ratio_number").value == 0.5
    assert kept(at) == "7 of 14"
    at.slider(key="ratio").set_value(0.6)
    at.number_input(key="ratio_number").set_value(0.5)
    at.run()
    assert at.slider(key="ratio").value == at.number_input(key="ratio_number").value == 0.6
    assert kept(at) == "9 of 14"


def test_the_rows_either_side_of_the_cut_line(store, scored14):
    ids, scores = runs.run_scores(store, scored14.id)
    order = np.argsort(-scores, kind="stable")
    labelling.label(store, scored14.id, [int(ids[order[-1]])], "keep", "ann")  # the worst row, forced in by its label
    # ann and bob disagree on the 5th best row: unresolved under the default policy, so no override
    labelling.label(store, scored14.id, [int(ids[order[4]])], "drop", "ann")
    labelling.label(store, scored14.id, [int(ids[order[4]])], "keep", "bob")
    at = app("select")
    at.slider(key="ratio").set_value(0.5).run()
    above, below = [d.value for d in at.dataframe if "rank" in d.value.columns][:2]
    assert kept(at) == "8 of 14"
    # kept rows, lowest-scored last: ranks 5, 6, 7 of the cut and the labelled worst row (14)
    assert above["rank"].tolist() == [4, 5, 6, 7, 14] and above["label"].tolist()[-1] == "keep"
    assert above["label"].tolist()[1] == "1 drop / 1 keep"
    said = " ".join(c.value for c in at.caption)
    assert re.search(r"\b1\b[^;.]*unanim|unanim[^;.]*\b1\b", said), said  # the keep on the worst row
    assert re.search(r"\b1 rows? where annotators disagree", said), said  # the conflict: no override
    assert below["rank"].tolist() == [8, 9, 10, 11, 12]
    assert above["score"].tolist() == np.round(scores[order[[3, 4, 5, 6, 13]]].astype(float), 4).tolist()
    assert below["instruction"].str.startswith("Question").all()
    assert not at.exception and not at.error, texts(at.error)


def test_around_cut_and_a_curve_point_as_each_rules_value():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, np.nan])
    chosen = select(scores, "ratio", 0.4)  # 5 scored rows: keeps 2 (0.9, 0.7)
    above, below = around_cut(chosen, scores, n=1)
    assert above.tolist() == [3] and below.tolist() == [2]
    assert [x.tolist() for x in around_cut(cut(scores[:5], topk=5), scores[:5])] == [[1, 3, 2, 4, 0], []]
    pool = scores[:5]
    assert rule_value_at("ratio", 0.38, pool) == 0.4 and rule_value_at("topk", 0.38, pool) == 2
    assert rule_value_at("threshold", 0.38, pool) == 0.7  # the second best score
    assert rule_value_at("ratio", 0.0, pool) == 0.2 and rule_value_at("topk", 1.0, pool) == 5  # clamped
    for rule in ("ratio", "topk", "threshold"):  # the value found keeps exactly the point's rows
        assert len(select(pool, rule, rule_value_at(rule, 0.6, pool)).kept) == 3
    with pytest.raises(ScarError):
        rule_value_at("ratio", 0.5, np.array([]))


def test_the_coverage_slider_spreads_the_cut_and_the_evidence_panel_follows(store, scored14):
    """Issue 27: coverage 0 is the plain cut; moving it changes the cut's clusters in the evidence panel,
    which sets the cut beside random, longest and length-matched subsets of the same size."""
    at = app("select")
    at.slider(key="ratio").set_value(0.5).run()
    evidence = next(d.value for d in at.dataframe if "clusters touched" in d.value.columns)
    assert list(evidence.index) == ["cut", "random", "longest", "length-matched"]
    assert (evidence["rows"] == 7).all()
    plain = at.session_state["ratio"], evidence.loc["cut"].to_dict()
    at.slider(key="coverage").set_value(1.0).run()
    spread = next(d.value for d in at.dataframe if "clusters touched" in d.value.columns)
    assert spread.loc["cut", "rows"] == 7 and spread.loc["cut", "clusters touched"] >= plain[1]["clusters touched"]
    assert spread.loc["cut"].to_dict() != plain[1]
    assert any("clusters (k-means" in c.value for c in at.caption)
    assert not at.exception and not at.error, texts(at.error)


def test_the_progress_fragments_keep_their_names_whatever_the_page_draws_above_them(store, scored14, tiny_lm,
                                                                                    monkeypatch):
    """Quotas draw an editor and a signal kind its own box above the signal job's progress; a save its
    message and a finished validation its report above the validation's progress: both Cancel buttons
    keep their names."""
    from scar_core.jobs import signals, validation
    from scar_core.jobs.runner import run_job
    from scar_core.validate import Settings
    from tests.test_validate_job import TINY

    signals.submit_signal(store, scored14.id, "ifd", made_by="ann", launch=False)
    check = validation.start_validation(store, scored14.id, [1.0], settings=Settings(**TINY),
                                        tune_model=str(tiny_lm), eval_rows=4, launch=False)
    named = fragment_names(monkeypatch, "signal_progress", "validation_progress")
    at = app("select")
    assert any("No validation of this data set yet" in i.value for i in at.info)
    at.checkbox(key="use_quotas").check()
    at.selectbox(key="signal_kind").set_value("exemplar")
    at.button(key="save_selection").click().run()
    assert texts(at.success)[0].startswith("Saved selection 'ratio-0.3'")
    assert at.button(key="signal_cancel") and at.button(key=f"cancel_validation_{check.id}")
    assert run_job(store, check.id).status == "done"
    at.run()
    assert at.selectbox(key="validation_shown").value == check.id and at.button(key="signal_cancel")
    assert not at.exception, at.exception
    assert all(len(n) >= 3 and len(set(n)) == 1 for n in named.values()), named
