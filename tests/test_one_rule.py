"""One selection rule and one manifest: the CLI's `rank` and the app (Rank, Select and Export pages,
through AppTest) keep the same rows in the same order from a pool with duplicates, annotator labels
and rows flagged for language, and write the same manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from db import datasets, open_store, runs, selections
from scar_core.cli import main
from scar_core.clean import clean
from scar_core.jobs.datasets import import_file
from scar_core.jobs import labelling
from scar_core.jobs.export import ExportPackage
from scar_core.labels import Verdict, read_labels
from scar_core.load import load
from tests.test_app import APP, started_run

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "How many legs does a spider have?",
             "What does a thermometer measure?", "Who wrote Hamlet?", "What is frozen water called?"]
ANSWERS = ["The capital of France is Paris, a city on the Seine.", "Red is a primary colour, like blue and yellow.",
           "A spider has eight legs, unlike an insect, which has six.",
           "A thermometer measures temperature, in degrees Celsius or Fahrenheit.",
           "William Shakespeare wrote Hamlet around the year 1600.", "Frozen water is called ice; it melts at 0 °C."]
# Each answer's copies add a few words: near duplicates, which the ranker scores differently.
VARIANTS = [lambda a: a, lambda a: a + " That is well known.", lambda a: a + " You can look it up."]
FOREIGN = [("Wie funktioniert die Photosynthese?", "Pflanzen nutzen Sonnenlicht, um aus Wasser und Kohlendioxid "
            "Zucker herzustellen; dabei wird Sauerstoff frei."),
           ("Comment fonctionne la photosynthèse ?", "Les plantes utilisent la lumière du soleil pour fabriquer du "
            "sucre à partir de l'eau et du dioxyde de carbone.")]
RATIO = 0.5


@pytest.fixture
def pool(tmp_path):
    rows = [{"instruction": q, "output": variant(a), "source": f"s{i % 2}"}
            for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS)) for variant in VARIANTS[: 2 + i % 2]]
    rows += [{"instruction": q, "output": a, "source": "s0"} for q, a in FOREIGN]
    rows += [{"instruction": "Explain why the sky is blue in two sentences.",  # degenerate rows (issue 27)
              "output": "Explain why the sky is blue in two sentences.", "source": "s1"},
             {"instruction": "Give three tips for staying healthy.", "output": " ... ", "source": "s0"},
             {"instruction": "Give three tips for staying healthy.", "output": "I'm sorry, but I can't help with that.",
              "source": "s1"}]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def cli_rank(capsys, pool, tiny_checkpoint, out, labels_file) -> dict:
    code = main(["rank", str(pool), "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu",
                 "--ratio", str(RATIO), "--labels", str(labels_file), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


def app_rank(store, tiny_checkpoint) -> tuple[int, int]:
    """Score the only dataset from the Rank page (cleaning on, fp32, CPU); (run id, dataset id)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/rank.py").run()
    at.radio(key="ranker_kind").set_value("checkpoint folder").run()
    at.text_input(key="checkpoint_dir").set_value(str(tiny_checkpoint))
    at.selectbox(key="device").set_value("cpu")
    at.selectbox(key="precision").set_value("fp32").run()
    at.button(key="start").click().run()
    run = started_run(store, at)
    return run.id, run.dataset_id


def app_select(store) -> None:
    """Cut the run at RATIO on the Select page, labels applied and flagged rows left out, and save it."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/select.py").run()
    at.slider(key="ratio").set_value(RATIO).run()
    assert at.checkbox(key="use_labels").value and at.checkbox(key="skip_flagged").value
    at.text_input(key=f"selection_name::ratio-{RATIO:g}").set_value("same")
    at.button(key="save_selection").click().run()
    assert not at.exception, at.exception
    assert len(at.success) == 1 and at.success[0].value.startswith("Saved selection 'same' version 1 (#")


def test_cli_and_app_keep_the_same_rows_and_write_the_same_manifest(tmp_path, capsys, monkeypatch, pool,
                                                                   tiny_checkpoint):
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    monkeypatch.setenv("SCAR_DB_URL", url)
    store = open_store(url)
    examples = load(pool).examples
    import_file(store, pool)
    run_id, dataset_id = app_rank(store, tiny_checkpoint)

    # Annotators: drop the best-scored kept row, keep one that the cut leaves out.
    stored = {row.content_id: row.id for row in datasets.examples(store, dataset_id, limit=None)}
    ids, scores = runs.run_scores(store, run_id)
    by_score = [int(i) for i in ids[np.argsort(-scores, kind="stable")]]
    content = {v: k for k, v in stored.items()}
    report = clean(examples).ranked(np.array([scores[list(ids).index(stored[e.id])] for e in examples]))
    candidates = [i for i in by_score if not report.flags[[e.id for e in examples].index(content[i])]]
    decisions = {candidates[0]: "drop", candidates[-1]: "keep", candidates[1]: "flag"}
    for example_id, label in decisions.items():
        labelling.label(store, run_id, [example_id], label, "ann")
    # the CLI reads the labels the app writes for it (Explore's "Download everyone's labels")
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_bytes(labelling.labels_file(store, run_id))
    assert sorted(read_labels(labels_file), key=lambda v: v.key) == \
        sorted((Verdict(content[i], "ann", v) for i, v in decisions.items()), key=lambda v: v.key)

    # The case that went wrong: a duplicate cluster whose best-scored copy is not its first.
    first_kept = clean(examples).keepers  # keeper by file order
    assert (report.keepers != first_kept).any(), "the pool needs a cluster whose best copy is not the first"

    app_select(store)
    saved = selections.list_selections(store, run_id)[0]
    package = ExportPackage(store, runs.get_run(store, run_id), saved, "alpaca", False)
    cli_manifest = cli_rank(capsys, pool, tiny_checkpoint, tmp_path / "cli.jsonl", labels_file)

    assert package.jsonl() == (tmp_path / "cli.jsonl").read_bytes()
    assert len(saved.example_ids) == cli_manifest["rows"] > 0
    app_manifest = package.manifest()
    assert app_manifest["selection"]["overrides"] == {"forced_in": 1, "forced_out": 1}
    assert app_manifest["selection"]["left_out"] == {"language": 2, "echo": 1, "empty": 1, "duplicate": 9,
                                                     "unscored": 0}
    assert (app_manifest["cleaning"]["counts"]["echoes"], app_manifest["cleaning"]["counts"]["refusals"]) == (1, 1)
    # the same manifest but for what only the store knows (which saved version, the label events seen)
    saved_part = app_manifest.pop("saved")
    assert app_manifest == {k: v for k, v in cli_manifest.items() if k != "path"}
    assert "saved" not in cli_manifest
    assert {k: saved_part[k] for k in ("selection_id", "name", "version", "run_id")} == \
        {"selection_id": saved.id, "name": "same", "version": 1, "run_id": run_id}
    assert saved_part["label_events"]["events"] == 3 == saved_part["label_events"]["last_event_id"]
    labels_applied = app_manifest["selection"]["labels"]
    assert labels_applied["policy"] == "lead-then-majority"
    assert labels_applied["rows"] == {"adjudicated": 0, "unanimous": 3, "majority": 0, "unresolved": 0}
    assert app_manifest["scope"] == {"sample": False, "rows": len(examples), "of": len(examples)}
