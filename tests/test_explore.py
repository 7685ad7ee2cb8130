"""The Explore page through streamlit's AppTest: the table, the maps, the example view and labelling.

Browser events AppTest has no helper for (a row picked in the table, a lasso on a map) are sent as the
widget state the browser would send (`send`)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from db import labels, runs
from db.store import open_store
from scar_core.jobs import datasets as importing
from scar_core.jobs.map import submit_map
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ROWS = [{"instruction": f"Question {i}: how do I do task {i}?",
         "output": (f"Sure! Here is how:\n\n1. First step of {i}.\n2. Second step.\n" if i % 2 else
                    f"You could try doing it slowly, I think. It took me {i} days."),
         "source": "web" if i % 3 else "chat"} for i in range(12)]


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    monkeypatch.setenv("SCAR_DB_URL", url)
    return open_store(url)


@pytest.fixture
def scored(store, tmp_path, tiny_checkpoint):
    """Twelve pairs scored by the tiny ranker and mapped, in this process (the jobs the workers run)."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    dataset = importing.import_file(store, path)
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    assert run_job(store, run.job_id).status == "done"
    assert run_job(store, submit_map(store, run.id, launch=False).id).status == "done"
    return runs.get_run(store, run.id)


def explore() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    return at


def send(at: AppTest, element, value: dict) -> AppTest:
    """Rerun as after a browser event on `element` (a table's row selection, a map's box or lasso)."""
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=element.proto.id, string_value=json.dumps(value)))
    return at._run(states)


def lasso(at: AppTest, chart: int, ids: list[int]) -> AppTest:
    points = [{"customdata": i, "point_index": k} for k, i in enumerate(ids)]
    return send(at, at.get("plotly_chart")[chart],
                {"selection": {"points": points, "point_indices": list(range(len(ids))), "box": [],
                               "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}})


def table(at: AppTest):
    return at.dataframe[0].value


def texts(elements) -> list[str]:
    """Element values; messages are markdown-escaped by the app, so the escapes are removed here."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def test_a_picked_row_survives_the_table_shrinking(store, scored):
    """Found 1: pick the 5th row, then filter so one row is left: no IndexError, the row left is shown."""
    at = explore()
    at = send(at, at.dataframe[0], {"selection": {"rows": [4], "columns": []}})
    assert not at.exception
    kept = runs.results_page(store, scored.id, limit=12)[7]
    labels.set_label(store, kept["example_id"], "keep", "ann")
    at.selectbox(key="label_filter").set_value("keep").run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert len(table(at)) == 1
    assert any(kept["instruction"] in c.value for c in at.code), [c.value for c in at.code]


def test_clearing_the_map_selection_unfilters_the_table(store, scored):
    """Found 2: a lasso filters the table; "Clear map selection" must unfilter it at once."""
    at = explore()
    ids = runs.run_scores(store, scored.id)[0][:3].tolist()
    at = lasso(at, 0, ids)
    assert len(table(at)) == 3
    next(b for b in at.button if b.label == "Clear map selection").click().run()
    assert not at.exception, at.exception
    assert len(table(at)) == 12
    assert not any(b.label == "Clear map selection" for b in at.button)


def test_colour_by_label_names_the_unlabelled_and_hover_shows_the_text(store, scored):
    """Found 8: no "nan" category, labelled points drawn larger and on top; hover shows the texts and score."""
    first = runs.results_page(store, scored.id, limit=1)[0]
    labels.set_label(store, first["example_id"], "drop", "ann")
    at = explore()
    at.radio(key="map_colour").set_value("label").run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    assert "nan" not in " ".join(traces) and "(none)" not in traces
    assert set(traces) >= {"unlabelled", "drop"}
    assert figure["data"][-1]["name"] == "drop"  # drawn last: on top
    assert traces["drop"]["marker"]["size"] > traces["unlabelled"]["marker"]["size"]
    hover = " ".join(str(t.get("hovertext")) for t in figure["data"])
    assert "Question 1" in hover or "Question 0" in hover
    assert f"{first['score']:.3f}" in hover
    assert "id " not in hover
