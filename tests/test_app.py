"""The app's main flow on every page, through streamlit's AppTest, against a fresh store per test and
the tiny random ranker (scoring is real; only the model is small)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from db import datasets, jobs, rankers, runs, selections
from scar_core.jobs import datasets as importing, labelling
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from scar_core.export import file_sha256
from scar_core.ranker import WEIGHTS
from tests.conftest import fragment_names, score_file

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
HOSTILE = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> '
           '[click](javascript:window.__pwned=3) ![x](http://evil.example.com/x.png) '
           '\x1b[31mred\x1b[0m zero\u200bwidth \u202eevil')
ROWS = [{"instruction": "Say hello", "output": HOSTILE, "source": "web"},
        {"instruction": "What is 2+2?", "output": "2 + 2 = 4.", "source": "math"},
        {"instruction": "Name a colour.", "output": "Blue is a colour of the sky.", "source": "web"},
        {"instruction": "Give a greeting.", "output": "Good morning! I hope your day goes well.", "source": "chat"},
        {"instruction": "Count to three.", "output": "One, two, three.", "source": "math"},
        {"instruction": "Explain rain.", "output": "Rain is water falling from clouds when droplets grow heavy.",
         "source": "chat"}]


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + '{"bad": 1}\n')
    return path


@pytest.fixture
def scored(store, data_file, tiny_checkpoint):
    """A dataset scored by the tiny ranker in this process (the job code the worker runs)."""
    return score_file(store, data_file, tiny_checkpoint, lenient=True)


def app(page: str = "datasets") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def started_run(store, at: AppTest, timeout_s: float = 180):
    """The run the Rank page just started, once its background worker has finished it."""
    assert any(s.startswith("Started run") for s in texts(at.success)), texts(at.error)
    run = runs.list_runs(store)[0]
    deadline = time.time() + timeout_s
    while runs.get_run(store, run.id).status != "done" and time.time() < deadline:
        time.sleep(1)
    assert runs.get_run(store, run.id).status == "done", jobs.get_job(store, run.job_id).error
    return runs.get_run(store, run.id)


def texts(elements) -> list[str]:
    """Element values; messages are markdown-escaped by the app, so the escapes are removed here."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def test_datasets_preview_import_rename_delete(store, data_file):
    at = app()
    at.text_input(key="server_path").set_value(str(data_file)).run()
    assert "Detected format: alpaca" in texts(at.text)
    assert at.selectbox(key="map_0_output").value == "output"
    at.checkbox(key="lenient_0").check()  # strict unless asked: the bad last row would refuse the file
    at.button(key="import_0").click().run()
    assert texts(at.success) == ["Imported pairs.jsonl as data set #1: 6 pairs from 7 rows, 1 row left out "
                                 "(the Library lists them)."]
    stored = datasets.list_datasets(store)
    assert [(d.example_count, len(d.rejected)) for d in stored] == [(6, 1)]
    assert "line 7" in at.dataframe[-1].value["where"].tolist()  # the validation report of the library tab
    at.text_input(key="rename_1").set_value("greetings")
    at.button(key="rename_button").click().run()
    assert datasets.get_dataset(store, 1).name == "greetings"
    at.checkbox(key="sure_1").check().run()
    at.button(key="delete_button").click().run()
    assert datasets.list_datasets(store) == []
    assert not at.exception


def test_datasets_field_mapping_and_bad_file_message(store, tmp_path):
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text(json.dumps({"question": "Hi?", "answer": "Hello."}) + "\n")
    at = app()
    at.text_input(key="server_path").set_value(str(renamed)).run()
    at.selectbox(key="fmt_0").set_value("alpaca").run()
    at.selectbox(key="map_0_instruction").set_value("question")
    at.selectbox(key="map_0_output").set_value("answer")
    at.button(key="import_0").click().run()
    assert datasets.list_datasets(store)[0].example_count == 1

    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "a", "output": ')
    at.text_input(key="server_path").set_value(str(broken)).run()
    at.checkbox(key="lenient_0").uncheck()
    at.button(key="import_0").click().run()
    assert any("broken.json" in e for e in texts(at.error)), texts(at.error)
    assert not at.exception
    assert len(datasets.list_datasets(store)) == 1  # the failed import stored nothing


def test_rank_page_refuses_bad_choices_then_scores_in_background(store, data_file, tiny_checkpoint, tmp_path):
    importing.import_file(store, data_file, lenient=True)
    at = app("rank")
    at.radio(key="ranker_kind").set_value("checkpoint folder").run()
    at.text_input(key="checkpoint_dir").set_value(str(tmp_path)).run()
    at.button(key="start").click().run()
    assert any("not a ranker checkpoint" in e for e in texts(at.error))
    at.text_input(key="checkpoint_dir").set_value(str(tiny_checkpoint))
    at.checkbox(key="do_clean").uncheck()
    at.selectbox(key="device").set_value("cuda").run()
    at.button(key="start").click().run()
    if not torch.cuda.is_available():
        assert any("CUDA" in e for e in texts(at.error))
    at.selectbox(key="device").set_value("cpu").run()
    at.button(key="start").click().run()
    run = started_run(store, at)
    assert runs.count_done(store, run.id) == 6
    at.run()
    history = at.dataframe[-1].value
    assert history.loc[0, "status"] == "done" and history.loc[0, "scored"] == "6/6"
    assert not at.exception


def test_select_cut_overrides_and_save(store, scored):
    ids, scores = runs.run_scores(store, scored.id)
    best = int(ids[scores.argmax()])
    labelling.label(store, scored.id, [best], "drop", "ann")
    at = app("select")
    at.slider(key="ratio").set_value(0.5).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Kept"] == "2 of 6" and metrics["Overrides"] == "+0 / -1"
    at.checkbox(key="use_labels").uncheck().run()
    assert {m.label: m.value for m in at.metric}["Kept"] == "3 of 6"
    name = "selection_name::ratio-0.5"
    assert at.text_input(key=name).label == "Save this selection as" and at.text_input(key=name).value == "ratio-0.5"
    at.text_input(key=name).set_value("half")
    at.button(key="save_selection").click().run()
    saved = selections.list_selections(store, scored.id)
    assert [(s.name, s.version, len(s.example_ids)) for s in saved] == [("half", 1, 3)]
    assert best in saved[0].example_ids and saved[0].params["threshold_score"] is not None
    assert texts(at.success) == [f"Saved selection 'half' version 1 (#{saved[0].id}) with 3 examples."]
    at.button(key="save_selection").click().run()  # the very same cut again: nothing new stored
    assert any("already saved as 'half'" in m for m in texts(at.success))
    assert len(selections.list_selections(store, scored.id, versions=True)) == 1
    at.checkbox(key="use_labels").check().run()  # another cut under the same name: asks first
    at.button(key="save_selection").click().run()
    assert any("named 'half' already exists" in w for w in texts(at.warning))
    assert len(selections.list_selections(store, scored.id, versions=True)) == 1
    at.button(key="save_replace").click().run()
    latest = selections.list_selections(store, scored.id)
    assert [(s.name, s.version, len(s.example_ids)) for s in latest] == [("half", 2, 2)] and best not in latest[0].example_ids
    assert texts(at.success)[0].startswith(f"Saved selection 'half' version 2 (#{latest[0].id}) with 2 examples")
    every = selections.list_selections(store, scored.id, versions=True)
    assert [(s.version, len(s.example_ids)) for s in every] == [(1, 3), (2, 2)]  # version 1 stays as it was
    at.checkbox(key="use_labels").uncheck().run()
    at.button(key="save_selection").click().run()
    assert any("named 'half' already exists" in w for w in texts(at.warning))
    at.button(key="save_rename").click().run()  # choose another name instead
    assert not any("already exists" in w for w in texts(at.warning))
    at.text_input(key=name).set_value("half-unlabelled")
    at.button(key="save_selection").click().run()
    assert [(s.name, s.version) for s in selections.list_selections(store, scored.id)] == \
        [("half", 2), ("half-unlabelled", 1)]
    assert not at.exception


def test_export_writes_best_first_with_manifest_inside_the_folder(store, scored, tmp_path):
    ids, scores = runs.run_scores(store, scored.id)
    order = ids[(-scores).argsort(kind="stable")][:3]
    # saved best first, as Select saves a cut (a blended cut's order is its blend's): the file keeps that order
    selections.save_selection(store, scored.id, "top", "ratio", {"rule": "ratio", "threshold_score": 0.1},
                              order.tolist())
    at = app("export")
    assert any("was saved without value, keep_flagged, quotas" in i for i in texts(at.info))  # no bundle, no crash
    at.radio(key="export_format").set_value("messages")
    at.checkbox(key="with_scores").check()
    at.text_input(key="export_folder").set_value(str(tmp_path / "out"))
    at.text_input(key="export_name").set_value("../../escape")
    next(b for b in at.button if b.label == "Write").click().run()
    assert not texts(at.error) and not at.exception
    written = tmp_path / "out" / "escape.jsonl"
    lines = [json.loads(x) for x in written.read_text().splitlines()]
    assert len(lines) == 3 and [x["score"] for x in lines] == sorted(scores.tolist(), reverse=True)[:3]
    assert lines[0]["messages"][-1]["role"] == "assistant"
    manifest = json.loads((tmp_path / "out" / "escape.jsonl.manifest.json").read_text())
    ranker = rankers.get_ranker(store, scored.ranker_id)
    assert manifest["inputs"][0]["sha256"] == datasets.get_dataset(store, scored.dataset_id).sha256
    assert manifest["ranker"]["weights_sha256"] == file_sha256(Path(ranker.location) / WEIGHTS) == ranker.identity
    assert manifest["rows"] == 3 and manifest["precision"] == "fp32" and manifest["device"] == "cpu"
    assert manifest["threshold_score"] == 0.1 and len(manifest["selected_ids_sha256"]) == 64
    assert {"versions", "cleaning", "selection"} <= set(manifest)
    assert {k: manifest["saved"][k] for k in ("name", "version", "run_id")} == {"name": "top", "version": 1,
                                                                               "run_id": scored.id}
    assert [e.path for e in selections.list_exports(store)] == [str(written)]


@pytest.mark.slow
def test_train_page_trains_from_a_training_file_and_shows_epochs(store, tmp_path):
    rows = [{"instruction": f"Explain topic {i}.", "human": f"dunno, topic {i} is a thing i never looked into",
             "referenced": f"Topic {i} explained in a clear, complete sentence.",
             "direct": f"Topic {i}:\n1. A first point.\n2. A second point.", "source": "t"} for i in range(20)]
    data = tmp_path / "training.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    at = app("train")
    at.radio(key="train_source").set_value("a training file on the server").run()
    at.text_input(key="train_file").set_value(str(data))
    at.number_input(key="train_epochs").set_value(2).run()
    at.text_input(key="train_init").set_value(str(tmp_path / "no-such-ranker"))
    at.button(key="start_train").click().run()
    assert any("not a ranker checkpoint" in e for e in texts(at.error)) and not jobs.list_jobs(store, "train")
    at.text_input(key="train_init").set_value("")
    at.checkbox(key="train_debias").check()
    at.checkbox(key="train_lm").check()
    at.button(key="start_train").click().run()
    assert any(s.startswith("Started training job") for s in texts(at.success)), texts(at.error)
    job = jobs.list_jobs(store, "train")[0]
    deadline = time.time() + 300
    while jobs.get_job(store, job.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(1)
    job = jobs.get_job(store, job.id)
    assert job.status == "done", job.error
    assert [h["epoch"] for h in job.params["history"]] == [1, 2]
    assert job.result["n_length_debias_rows"] == job.result["n_train_rows"] // 2 > 0
    at.run()
    assert any("Best epoch" in s for s in texts(at.success)) and at.get("plotly_chart")
    trained = [r for r in rankers.list_rankers(store) if r.id == job.result["ranker_id"]]
    assert trained and Path(trained[0].location).is_dir()
    term = json.loads((Path(trained[0].location) / "config.json").read_text())["lm_term"]
    assert term["lm"] == "smollm2" and term["std"] > 0 and trained[0].recipe["lm_surprisal"] is True


def test_the_training_progress_keeps_its_name_whatever_the_settings_above_draw(store, monkeypatch):
    """The settings draw a data set chooser and the LLM's settings, or one box for a training file: the
    progress below, with its Cancel, keeps its name either way."""
    job = jobs.create_job(store, "train", {"out": "mine"})
    named = fragment_names(monkeypatch, "progress")
    at = app("train")
    at.radio(key="train_source").set_value("a training file on the server").run()
    assert at.button(key="cancel_train") and at.selectbox(key="_train_job").value == job.id
    assert not at.exception, at.exception
    assert len(named["progress"]) == 2 and len(set(named["progress"])) == 1, named


def test_explore_shows_the_lm_terms_nll(store, data_file, tmp_path, tiny_lm):
    from scar_core.diagnostics.table import PART_LABELS
    from scar_core.ranker import LMTerm
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=5.0, std=1.0))
    ranker.lm_weight.data.fill_(0.5)
    ranker.save(tmp_path / "lm-ranker")
    pasted = "the quick brown fox jumps over the lazy dog near the river bank"
    with data_file.open("a") as f:  # an answer pasted whole from its prompt
        f.write(json.dumps({"instruction": f"Repeat this: {pasted}", "output": pasted}) + "\n")
    dataset = importing.import_file(store, data_file, lenient=True)
    run = submit_score(store, dataset.id, model=str(tmp_path / "lm-ranker"), device="cpu", precision="fp32",
                       launch=False)
    assert run_job(store, run.job_id).status == "done"
    at = app("explore")
    at.text_input(key="search").set_value("colour").run()
    nll = runs.results_page(store, run.id, runs.ResultFilter(search="colour"))[0]["diagnostics"]["lm_nll"]
    assert any(f"NLL is {nll:.3f} nats per token" in c for c in texts(at.caption)), texts(at.caption)
    assert {m.label: m.value for m in at.metric}[PART_LABELS["lm_contribution"]] == f"{-0.5 * (nll - 5.0):.4f}"
    at.text_input(key="search").set_value("brown fox").run()
    assert runs.results_page(store, run.id, runs.ResultFilter(search="brown fox"))[0]["diagnostics"]["lm_nll"] is None
    assert any("too little of it is its own text" in c for c in texts(at.caption)), texts(at.caption)
    assert {m.label: m.value for m in at.metric}[PART_LABELS["lm_contribution"]] in ("0.0000", "-0.0000")  # average
