"""Issue 30, found 7, 9 and 10 (maps and the score breakdown on Explore) and issue 27's cluster colours,
through the library and Streamlit's AppTest. Found 6 and 8 need a real browser (test_browser_explore)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from db import jobs, maps, runs
from scar_core import plots
from scar_core.jobs import map as map_job
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.conftest import score_file
from tests.test_explore import ROWS, explore, points_of, scored, texts  # noqa: F401 (scored is a fixture)


def test_hover_text_escapes_tags_once_and_keeps_quotes():
    """Found 7: `\"\"\"Add two numbers.\"\"\"` showed as `&quot;&quot;&quot;Add ...` (plotly decodes no &quot;)."""
    hover = plots.point_hover(['def add(a, b):\n    """Add two numbers."""'], ["<b>bold</b> & 'it'"], [0.5])[0]
    assert '"""Add two numbers."""' in hover and "&quot;" not in hover and "&#x27;" not in hover
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; 'it'" in hover  # tags stay text: plotly renders a subset of HTML


def test_colour_by_selection_draws_the_selected_points_on_top_in_colour(store, scored):  # noqa: F811
    """Found 7: the selected points were the palest; now they are coloured, larger and drawn last."""
    from scar_core.jobs import selection

    chosen, table = selection.select_run(store, scored.id, "ratio", 0.25)
    saved = selection.save(store, scored.id, "quarter", chosen, table).selection
    at = explore()
    at.radio(key="map_colour").set_value("selection").run()
    at.selectbox(key="map_selection").set_value(saved.id).run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    picked, rest = traces[plots.SELECTED], traces[plots.NOT_SELECTED]
    assert sorted(points_of(picked)) == sorted(saved.example_ids)
    assert picked["marker"]["color"] != plots.PALE and rest["marker"]["color"] == plots.PALE
    assert picked["marker"]["size"] > rest["marker"]["size"]
    assert figure["data"].index(picked) > figure["data"].index(rest)  # drawn last: on top


def test_colour_by_selection_without_a_saved_one_says_where_to_make_one(store, scored):  # noqa: F811
    at = explore()
    at.radio(key="map_colour").set_value("selection").run()
    assert any("no saved selection yet" in c.value for c in at.caption)


def test_the_maps_colour_by_the_coverage_clusters(store, scored):  # noqa: F811
    """Issue 27: "The maps colour by cluster": the clusters the coverage-aware cut spreads over."""
    from scar_core.jobs import selection

    table = selection.run_table(store, scored.id)
    space = selection.run_space(store, scored.id, table)
    at = explore()
    at.radio(key="map_colour").set_value("cluster").run()
    assert not at.exception, at.exception
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = {i: t["name"] for t in figure["data"] for i in points_of(t)}
    expected = {int(i): f"cluster {int(c) + 1}" for i, c in zip(table["example_id"], space.clusters)}
    assert drawn == expected and len(set(drawn.values())) == space.k
    assert any(f"{space.k} clusters" in c.value for c in at.caption)


@pytest.fixture
def lm_run(store, tmp_path, tiny_lm):
    """The Explore rows scored by a tiny ranker with an LM term (its part varies per row)."""
    from scar_core.ranker import LMTerm
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=0.5))
    ranker.lm_weight.data.fill_(2.0)
    ranker.save(tmp_path / "lm-ranker")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return score_file(store, data, tmp_path / "lm-ranker", mapped=True)


def test_the_breakdown_names_every_part_in_full_and_each_part_has_a_histogram(store, lm_run):
    """Found 9: part names were cut off (a metric's label is cut at its column's width) and the LM term,
    often the largest part, had no histogram under Distributions."""
    from scar_core.diagnostics.table import PART_LABELS, PARTS

    at = explore()
    assert not at.exception, at.exception
    headings = [m.value for m in at.markdown]
    assert all(f"**{PART_LABELS[name]}**" in headings for name in PARTS)
    charts = [c.proto.id for c in at.get("plotly_chart")]
    for name in PARTS[1:]:  # the baseline is one number, the same for every row: nothing to plot
        assert any(f"hist_{name}" in c for c in charts), name
    lm = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "hist_lm_contribution" in c.proto.id)
    assert lm["layout"]["title"]["text"] == PART_LABELS["lm_contribution"]


def test_a_ranker_without_an_lm_term_shows_no_lm_histogram(store, scored):  # noqa: F811
    at = explore()
    charts = [c.proto.id for c in at.get("plotly_chart")]
    assert any("hist_lf_contribution" in c for c in charts) and not any("hist_lm_contribution" in c for c in charts)


def test_a_scoring_worker_maps_its_run_when_it_is_done(store, tmp_path, tiny_checkpoint):
    """Found 10: maps are made without being asked for, by the worker that scored the run."""
    from scar_core.cli import main
    from scar_core.jobs import datasets as importing

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    dataset = importing.import_file(store, data)
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    assert main(["worker", str(run.job_id), "--db", store.url]) == 0
    job = map_job.latest_map_job(store, run.id)
    assert job is not None and job.status == "done"
    assert sorted(maps.map_points(store, run.id, "lf")["example_id"]) == sorted(runs.run_scores(store, run.id)[0])


def test_explore_starts_the_maps_of_a_finished_run_that_has_none(store, tmp_path, tiny_checkpoint):
    """A run answered from the store (no worker ran) or scored before maps were automatic gets its map
    job when Explore opens it, with its progress and a word on how long UMAP takes."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    run = score_file(store, data, tiny_checkpoint)
    assert map_job.latest_map_job(store, run.id) is None
    at = explore()
    job = map_job.latest_map_job(store, run.id)
    assert job is not None
    assert any("started automatically" in c.value and "may take minutes" in c.value for c in at.caption)
    jobs.request_cancel(store, job.id)  # its worker need not finish


def test_a_cancelled_run_says_why_it_has_no_maps(store, tmp_path, tiny_checkpoint):
    """Found 10: on a cancelled or partial run the button was greyed out with no reason."""
    from scar_core.jobs import datasets as importing

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    dataset = importing.import_file(store, data)
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       chunk_rows=4, launch=False)
    seen = []

    def cancel_after_first_chunk(done: int, total: int, rate: float) -> None:
        seen.append(done)
        if len(seen) == 1:
            jobs.request_cancel(store, run.job_id)
    assert run_job(store, run.job_id, progress=cancel_after_first_chunk).status == "cancelled"
    run = runs.get_run(store, run.id)
    done = runs.count_done(store, run.id)
    assert 0 < done < len(ROWS)
    reason = map_job.unmappable(store, run)
    assert f"cancelled with {done} of {len(ROWS)} rows scored" in reason and "Resume it on the Rank page" in reason
    assert map_job.ensure_map(store, run.id) is None  # nothing started
    at = explore()
    assert reason in [i.value for i in at.info]
    assert not any(b.key == "compute_maps" for b in at.button)
    assert np.isfinite(runs.run_scores(store, run.id)[1]).all()


# ---- import (found 11) ------------------------------------------------------------------------------
def datasets_page(path):
    """The Datasets page under AppTest with `path` typed into the server-path box."""
    from tests.test_app import app

    at = app("datasets")
    at.text_input(key="server_path").set_value(str(path)).run()
    assert not at.exception, at.exception
    return at


def clicked(at, key: str):
    next(b for b in at.button if b.key == key).click().run()
    assert not at.exception, at.exception
    return at


def test_import_is_strict_by_default_shows_problems_first_and_counts_in_words(store, tmp_path):
    """A truncated file imported green with "1 pairs from 2 rows"; its problem showed only at Import."""
    from db import datasets

    data = tmp_path / "cut.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi!"}) + '\n{"instruction": "Say b')
    at = datasets_page(data)
    assert at.checkbox(key="lenient_0").value is False  # strict unless chosen
    warned = " ".join(texts(at.warning) + texts(at.caption))
    assert "1 problem in the first 2 rows" in warned and "line 2" in warned  # before any Import
    at = clicked(at, "import_0")
    assert any(e.startswith(f"{data}, line 2") for e in texts(at.error)) and not datasets.list_datasets(store)
    at.checkbox(key="lenient_0").check().run()
    at = clicked(at, "import_0")
    assert texts(at.success) == [
        "Imported cut.jsonl as data set #1: 1 pair from 2 rows, 1 row left out (the Library lists them)."]
    at = clicked(at, "import_0")  # the same file with the same choices again
    assert not at.success and any(i.startswith("Already imported as #1 (cut.jsonl)") for i in texts(at.info))
    assert len(datasets.list_datasets(store)) == 1


def test_the_preview_shows_a_row_an_import_would_refuse_and_stays_readable(store, tmp_path):
    data = tmp_path / "typed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (
        {"instruction": "Add.", "output": "Two. " * 40}, {"instruction": "Count.", "output": 5})))
    at = datasets_page(data)
    assert "line 2: field 'output': expected text, got a number" in " ".join(texts(at.caption))
    preview = json.loads(next(d for d in at.dataframe).proto.columns)
    assert preview["output"]["width"] == "large"  # the output column is not squeezed to a few characters


def test_two_mappings_of_one_file_are_two_data_sets_named_and_identified_apart(store, tmp_path):
    from db import datasets
    from scar_core import intake
    from scar_core.jobs import datasets as importing

    data = tmp_path / "two.jsonl"
    data.write_text(json.dumps({"question": "Why?", "short": "Because.", "long": "Because it is so."}) + "\n")
    first = importing.import_file(store, data, field_map={"instruction": "question", "output": "short"})
    second = importing.import_file(store, data, field_map={"instruction": "question", "output": "long"})
    tagged = importing.import_file(store, data, field_map={"instruction": "question", "output": "long"}, source="web")
    assert len({first.id, second.id, tagged.id}) == 3
    assert len({first.name, second.name, tagged.name}) == 3 and "output←long" in second.name
    assert "source web" in tagged.name
    identities = {intake.identity(d.sha256, d.load_params) for d in datasets.list_datasets(store)}
    assert len(identities) == 3
    from tests.test_app import app

    library = next(d.value for d in app("datasets").dataframe if "identity" in d.value.columns)
    assert set(library["identity"]) == {i[:12] for i in identities}
    assert set(library["fields mapped"]) == {"instruction ← question, output ← short",
                                             "instruction ← question, output ← long"}


def test_messages_name_the_uploaded_file_once_not_the_servers_copy(tmp_path):
    from scar_core.errors import ScarError
    from scar_core.load import load

    copy = tmp_path / "uploads" / "0123abcd" / "mine.jsonl"
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps({"instruction": "A", "output": 1}) + "\n")
    with pytest.raises(ScarError) as strict:
        load(copy, name="mine.jsonl")
    with pytest.raises(ScarError) as lenient:
        load(copy, name="mine.jsonl", lenient=True)
    for message in (str(strict.value), str(lenient.value)):
        assert message.count("mine.jsonl") == 1 and str(copy.parent) not in message, message
    assert str(lenient.value) == ("mine.jsonl, line 1: no valid rows (1 rejected); the first problem: "
                                  "field 'output': expected text, got a number")


def test_a_training_shaped_file_points_to_the_train_page(store, tmp_path):
    from scar_core.errors import ScarError
    from scar_core.load import load

    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"instruction": "Why?", "human": "eh", "referenced": "Because.", "direct": "So."}) + "\n")
    with pytest.raises(ScarError, match="Train page"):
        load(data)
    at = datasets_page(data)
    assert any("Train page" in c for c in texts(at.caption))
