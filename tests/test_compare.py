"""Comparing two scoring runs: the library's figures on cases worked out by hand, the CLI's JSON and the
Compare page (AppTest) on two runs of tiny random rankers, and the refusal of runs over different datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from db import runs
from scar_core.cli import main
from scar_core.compare import compare, top_overlap
from scar_core.display import visible
from scar_core.errors import ScarError
from scar_core.jobs import datasets as importing
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.conftest import tiny_ranker
from tests.test_app import ROWS, app, data_file, texts  # noqa: F401 (data_file is a fixture)

IDS = np.array([1, 2, 3, 4, 5])
A = np.array([0.1, 0.2, 0.3, 0.4, 0.5])  # best first: 5 4 3 2 1
B = np.array([0.5, 0.2, 0.3, 0.4, 0.1])  # best first: 1 4 3 2 5 (ids 1 and 5 swapped)


def test_figures_of_two_swapped_rows():
    # B is given in another order: rows are matched by example id, not by position
    c = compare(IDS, A, IDS[::-1], B[::-1])
    # ranks differ by 4 for ids 1 and 5 only: rho = 1 - 6 * 32 / (5 * 24); 3 concordant, 7 discordant pairs
    assert c.spearman == pytest.approx(-0.6) and c.kendall == pytest.approx(-0.4)
    overlap = c.overlap.set_index("k_percent")
    assert len(c.overlap) == 50 and overlap.loc[1, "rows"] == 1 and overlap.loc[20, "overlap"] == 0  # 5 vs 1
    assert (overlap.loc[40, "rows"], overlap.loc[40, "shared"]) == (2, 1)  # {5, 4} and {1, 4}
    assert overlap.loc[50, "rows"] == 3 and overlap.loc[50, "overlap"] == pytest.approx(2 / 3)  # ratio rounds up
    assert c.disagreements[["example_id", "rank_a", "rank_b", "rank_difference"]].values.tolist() == [
        [1, 5, 1, 4], [5, 1, 5, 4]]


def test_identical_scorings_agree_everywhere_and_ties_are_no_disagreement():
    tied = np.array([0.3, 0.3, 0.9, 0.1, 0.5])
    c = compare(IDS, tied, IDS, tied.copy())
    assert c.spearman == pytest.approx(1) and c.kendall == pytest.approx(1)
    assert (c.overlap["overlap"] == 1).all() and c.disagreements.empty
    # tied rows keep id order in each side's top k%, as the ratio cut does
    assert top_overlap(np.array([1.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0]), (34,))["overlap"].tolist() == [1.0]


def test_only_rows_scored_on_both_sides_count():
    c = compare(np.array([1, 2, 3, 4, 9]), np.array([0.1, 0.2, np.nan, 0.4, 0.7]),
                np.array([4, 2, 1, 3, 8]), np.array([0.4, 0.2, 0.1, 0.3, 0.0]), limit=1)
    assert c.example_ids.tolist() == [1, 2, 4] and (c.only_a, c.only_b) == (1, 2)
    assert c.spearman == pytest.approx(1) and c.disagreements.empty
    flat = compare(IDS, A, IDS, np.full(5, 0.2))
    assert (flat.spearman, flat.kendall) == (None, None)  # a constant side has no rank correlation
    assert json.loads(json.dumps(flat.summary()))["spearman"] is None
    with pytest.raises(ScarError, match="share 1 scored example"):
        compare(np.array([1, 2]), np.array([0.1, 0.2]), np.array([2, 3]), np.array([0.1, 0.2]))


def test_compare_page_without_two_runs_says_what_it_needs(store):  # noqa: F811 (store: a fixture)
    at = app("compare")
    assert any("needs two scoring runs over the same dataset" in i.value for i in at.info) and not at.error


@pytest.fixture
def two_runs(store, data_file, tiny_checkpoint, tmp_path):  # noqa: F811 (store, data_file: fixtures)
    """Runs 1 and 2: one dataset scored by two different tiny rankers; run 3 scores another dataset."""
    other = tmp_path / "other"
    tiny_ranker(seed=1).save(other)
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:4]))
    dataset = importing.import_file(store, data_file, lenient=True)
    again = importing.import_file(store, fewer)
    made = []
    for dataset_id, model in ((dataset.id, tiny_checkpoint), (dataset.id, other), (again.id, tiny_checkpoint)):
        run = submit_score(store, dataset_id, model=str(model), device="cpu", precision="fp32", launch=False)
        if run.status != "done" and run.job_id is not None:
            assert run_job(store, run.job_id).status == "done"
        made.append(runs.get_run(store, run.id))
    return made


def test_cli_prints_the_figures_as_json_and_refuses_other_datasets(store, two_runs, capsys):  # noqa: F811
    first, second, elsewhere = two_runs
    assert main(["compare", str(first.id), str(second.id), "--db", store.url, "--top", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    (ids_a, a), (ids_b, b) = runs.run_scores(store, first.id), runs.run_scores(store, second.id)
    assert ids_a.tolist() == ids_b.tolist() and out["rows"] == 6
    assert out["spearman"] == pytest.approx(spearmanr(a, b).statistic)
    assert [row["k_percent"] for row in out["top_overlap"]] == list(range(1, 51))
    assert len(out["disagreements"]) <= 3 and out["run_a"]["run"] == first.id
    assert out["run_b"]["ranker"]["id"] == second.ranker_id != first.ranker_id
    assert main(["compare", str(first.id), str(elsewhere.id), "--db", store.url]) == 2
    err = capsys.readouterr().err
    assert "only runs over the same dataset can be compared" in err and "Traceback" not in err
    assert main(["compare", str(first.id), "99", "--db", store.url]) == 2
    assert "no scoring run 99" in capsys.readouterr().err


def test_compare_page_shows_the_figures_and_refuses_other_datasets(store, two_runs):  # noqa: F811
    first, second, elsewhere = two_runs
    at = app("compare")
    at.selectbox(key="compare_a").set_value(first.id).run()
    assert at.selectbox(key="compare_b").value == second.id  # a run over the same dataset is offered first
    (ids, a), (_, b) = runs.run_scores(store, first.id), runs.run_scores(store, second.id)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows compared"] == "6" and metrics["Spearman ρ"] == f"{spearmanr(a, b).statistic:.3f}"
    assert len(at.get("plotly_chart")) == 2 and not at.error
    worst = compare(ids, a, ids, b).disagreements
    assert len(at.expander) == len(worst) > 0
    shown = [c.value for c in at.expander[0].code]
    assert len(shown) == 2 and shown[1] in {visible(row["output"]) for row in ROWS}  # instruction, response
    at.selectbox(key="compare_b").set_value(elsewhere.id).run()
    assert any("only runs over the same dataset can be compared" in e for e in texts(at.error)), texts(at.error)
    assert not at.exception


def test_cli_refuses_a_store_path_that_is_not_there_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "typo" / "studio.db"
    for command in (["compare", "1", "2", "--db", str(missing)], ["jobs", "--db", str(missing)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"no database at {missing}" in err and "Traceback" not in err
    assert not missing.parent.exists()
