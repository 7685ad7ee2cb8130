"""Nothing a person did is lost or misapplied (issue 26): undo stays within one annotator's own work on
one run, saving under a used name keeps the old selection, bulk labels change exactly the rows the
table lists, annotators' disagreements are visible and settled by a named policy the CLI applies
alike, sample runs say so, a double start makes one run, and today's labels survive the migration."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from db import labels, runs, selections
from scar_core.cli import main
from scar_core.jobs import datasets as importing, labelling, selection
from scar_core.jobs.export import ExportPackage
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.conftest import chooser, score_file
from tests.test_app import APP, texts
from tests.test_explore import lasso

ROWS = [{"instruction": f"Question {i}: how do I do task {i}?",
         "output": (f"Sure! Here is how:\n\n1. First step of {i}.\n2. Second step.\n" if i % 2 else
                    f"You could try doing it slowly, I think. It took me {i} days."),
         "source": "web" if i % 3 else "chat"} for i in range(12)]


def pool(tmp_path, name: str, rows: list[dict] = ROWS):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def two_runs(store, tmp_path, tiny_checkpoint):
    """Two data sets of twelve pairs, each scored by the tiny ranker and mapped: (run 1, run 2)."""
    other = [{**r, "instruction": r["instruction"].replace("Question", "Query")} for r in ROWS]
    return (score_file(store, pool(tmp_path, "first.jsonl"), tiny_checkpoint, mapped=True),
            score_file(store, pool(tmp_path, "second.jsonl", other), tiny_checkpoint, mapped=True))


def page(name: str, annotator: str | None = None, run_id: int | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(f"pages/{name}.py").run()
    if annotator is not None:
        at.text_input(key="_annotator").set_value(annotator).run()
    if run_id is not None:
        chooser(at, "run").set_value(run_id).run()
    assert not at.exception, at.exception
    return at


def mine(store, run_id: int, annotator: str) -> dict[int, str]:
    return {i: v for i, who, v in labels.run_annotations(store, run_id) if who == annotator}


def bulk(at: AppTest, label: str) -> AppTest:
    at.selectbox(key="bulk_label").set_value(label).run()
    at.button(key="bulk_start").click().run()
    return at.button(key="bulk_confirm").click().run()


def test_the_run_chooser_s_older_value_never_moves_the_page_back(store, two_runs):
    """A run chosen elsewhere (a run just started, "Open run N") moves the page's run chooser. Until the
    browser has the new choice it sends the chooser's older value with every change: that value is not
    a choice, and the page must stay on the run it shows."""
    first, second = two_runs
    at = page("select", run_id=first.id)
    older = at._tree.get_widget_states()  # what the browser still holds: the chooser on the first run
    at.session_state["run"] = second.id  # chosen elsewhere
    at.run()
    assert chooser(at, "run").value == second.id
    at._run(older)  # the browser's next message, sent before it had the new choice
    assert chooser(at, "run").value == second.id and at.session_state["run"] == second.id
    assert not at.exception, at.exception


def test_undo_reverts_only_my_own_last_action_on_this_run(store, two_runs):
    """Found 1: B's bulk drop on run 1 was offered as Undo to A on run 2, and pressing it deleted B's labels."""
    first, second = two_runs
    at = page("explore", "B", first.id)
    at.selectbox(key="source_filter").set_value("chat").run()
    bulk(at, "drop")
    chat = set(mine(store, first.id, "B"))
    assert len(chat) == 4 and set(mine(store, first.id, "B").values()) == {"drop"}
    assert any("labelled 4 examples drop" in t for t in texts(at.info))

    at.text_input(key="_annotator").set_value("A").run()
    chooser(at, "run").set_value(second.id).run()
    assert not [b for b in at.button if b.key == "undo"], "A is offered B's undo on another run"
    assert not any("labelled 4 examples drop" in t for t in texts(at.info)), "run 1's message shows on run 2"
    chooser(at, "run").set_value(first.id).run()
    assert not [b for b in at.button if b.key == "undo"], "A is offered B's undo"
    at.button(key="label_keep").click().run()  # A's own verdict on run 1's first example
    assert [b.label for b in at.button if b.key == "undo"] == ["Undo: labelled 1 example keep"]

    at.text_input(key="_annotator").set_value("B").run()
    chooser(at, "run").set_value(second.id).run()
    assert not [b for b in at.button if b.key == "undo"], "B is offered run 1's undo on run 2"
    chooser(at, "run").set_value(first.id).run()
    at.button(key="undo").click().run()
    assert mine(store, first.id, "B") == {} and len(mine(store, first.id, "A")) == 1
    assert any("Undone: labelled 4 examples drop (4 reverted)" in t for t in texts(at.info))
    events = [e for i in chat for e, _ in labels.history(store, i)]
    assert sorted((str(e.label), str(e.previous_label)) for e in events if e.annotator == "B") == \
        [("None", "drop")] * 4 + [("drop", "None")] * 4  # the history keeps both the labels and their undo


def test_undo_leaves_a_verdict_changed_since_and_says_so(store, two_runs):
    first, _ = two_runs
    ids = runs.run_scores(store, first.id)[0][:3].tolist()
    labelling.label(store, first.id, ids, "keep", "A")
    labelling.label(store, first.id, ids[:1], "flag", "A", "unsure")
    assert labelling.undo(store, first.id, "A") == "Undone: labelled 1 example flag (1 reverted)."
    assert mine(store, first.id, "A") == dict.fromkeys(ids, "keep")
    labelling.label(store, first.id, ids[:1], "drop", "A")
    labelling.undo(store, first.id, "A")
    assert labelling.undo_offer(store, first.id, "A") == "labelled 3 examples keep"
    assert labelling.undo(store, first.id, "A") == "Undone: labelled 3 examples keep (3 reverted)."
    assert mine(store, first.id, "A") == {} and labelling.undo_offer(store, first.id, "A") is None


def test_saving_under_a_used_name_asks_and_keeps_the_old_version(store, two_runs):
    """Found 2: a ratio-0.1 cut saved as 'ratio-0.25' silently replaced the 0.25 selection."""
    first, _ = two_runs
    at = page("select", run_id=first.id)
    at.slider(key="ratio").set_value(0.25).run()
    at.button(key="save_selection").click().run()
    assert texts(at.success)[-1].startswith("Saved selection 'ratio-0.25' version 1")
    old = selections.list_selections(store, first.id)[0]
    assert len(old.example_ids) == 3
    at.button(key="save_selection").click().run()
    assert "already saved as 'ratio-0.25' (version 1" in texts(at.success)[-1] and \
        len(selections.list_selections(store, first.id, versions=True)) == 1

    at.slider(key="ratio").set_value(0.1).run()
    name_box = next(t for t in at.text_input if t.label == "Save this selection as")
    name_box.set_value("ratio-0.25").run()
    at.button(key="save_selection").click().run()
    assert "already exists (version 1, 3 examples)" in texts(at.warning)[-1]
    assert [(s.version, len(s.example_ids)) for s in selections.list_selections(store, first.id, versions=True)] == \
        [(1, 3)]
    at.button(key="save_replace").click().run()
    assert "version 2" in texts(at.success)[-1] and "replacing version 1" in texts(at.success)[-1]
    versions = selections.list_selections(store, first.id, versions=True)
    assert [(s.name, s.version, len(s.example_ids)) for s in versions] == [("ratio-0.25", 1, 3), ("ratio-0.25", 2, 2)]
    assert versions[0].example_ids == old.example_ids
    manifest = ExportPackage(store, first, versions[0], "alpaca", False).manifest()
    assert (manifest["saved"]["name"], manifest["saved"]["version"], manifest["rows"]) == ("ratio-0.25", 1, 3)


def test_bulk_labels_after_a_lasso_keep_the_tables_filters(store, two_runs):
    """Found 3: with the Label filter at keep (2 rows) and a lasso of 6, the button offered all 6."""
    first, _ = two_runs
    ids = runs.run_scores(store, first.id)[0].tolist()
    labelling.label(store, first.id, ids[:2], "keep", "A")
    at = page("explore", "A", first.id)
    at.selectbox(key="label_filter").set_value("keep").run()
    at = lasso(at, 0, ids[:6])
    assert any("2 of 1" in c.value and "picked on a map" in c.value for c in at.caption)
    assert at.button(key="bulk_start").label == "Label 0 as keep…" and at.button(key="bulk_start").disabled
    at.selectbox(key="bulk_label").set_value("flag").run()
    assert at.button(key="bulk_start").label == "Label 2 as flag…"
    at.button(key="bulk_start").click().run()
    at.button(key="bulk_confirm").click().run()
    assert mine(store, first.id, "A") == {ids[0]: "flag", ids[1]: "flag"}
    assert any("Saved: labelled 2 examples flag" in t for t in texts(at.info))


def test_disagreements_are_shown_and_settled_by_the_policy(store, two_runs):
    """Found 4: A keep and B drop on the same rows: the latest won silently, and a keep filter listed drops."""
    first, _ = two_runs
    ids, scores = runs.run_scores(store, first.id)
    worst = [int(i) for i in ids[np.argsort(scores, kind="stable")][:3]]  # left out by a 25% cut
    labelling.label(store, first.id, worst, "keep", "A")
    labelling.label(store, first.id, worst, "drop", "B")
    labelling.label(store, first.id, worst[:1], "keep", "C")  # 2 keep / 1 drop: the majority keeps it

    chosen, _ = selection.select_run(store, first.id, "ratio", 0.25)
    assert chosen.label_policy["rows"] == {"adjudicated": 0, "unanimous": 0, "majority": 1, "unresolved": 2}
    assert (chosen.forced_in, chosen.forced_out) == (1, 0)
    strict, _ = selection.select_run(store, first.id, "ratio", 0.25, policy="lead-then-unanimous")
    assert strict.label_policy["rows"]["unresolved"] == 3 and strict.forced_in == 0

    at = page("explore", "L", first.id)
    at.selectbox(key="sort").set_value("score_asc").run()
    shown = at.dataframe[0].value
    assert shown["label"].tolist()[:3] == ["2 keep / 1 drop", "1 drop / 1 keep", "1 drop / 1 keep"]
    at.selectbox(key="label_filter").set_value("keep").run()
    assert at.dataframe[0].value["label"].tolist() == ["2 keep / 1 drop"]
    at.selectbox(key="label_filter").set_value("(any)").run()
    at.selectbox(key="sort").set_value("conflicts").run()
    assert len(at.dataframe[0].value) == 2
    at.button(key="decide_keep").click().run()  # the lead settles the open conflict, then moves to the next
    at.button(key="decide_drop").click().run()
    decided = labelling.resolution(store, first.id)
    assert decided.counts() == {"adjudicated": 2, "unanimous": 0, "majority": 1, "unresolved": 0}
    # the queue goes best first: the better of the two (worst[2]) was decided first
    assert [decided.summary(i) for i in worst[1:]] == ["→ drop (lead; 1 drop / 1 keep)", "→ keep (lead; 1 drop / 1 keep)"]
    assert mine(store, first.id, "A") == dict.fromkeys(worst, "keep")  # nobody's verdict was overwritten


def test_cli_and_app_apply_the_same_policy_to_the_same_verdicts(store, tmp_path, tiny_checkpoint, capsys):
    """Two annotators disagree, a lead decides one row: the app's export and `rank --labels` with the
    store's labels file keep the same rows in the same order."""
    path = pool(tmp_path, "pool.jsonl")
    run = score_file(store, path, tiny_checkpoint)
    ids, scores = runs.run_scores(store, run.id)
    order = [int(i) for i in ids[np.argsort(-scores, kind="stable")]]
    labelling.label(store, run.id, order[:2] + order[-2:], "keep", "A")
    labelling.label(store, run.id, order[:2] + order[-2:], "drop", "B")
    labelling.label(store, run.id, order[:1] + order[-1:], "drop", "C")  # majority drop for these two
    labelling.adjudicate(store, run.id, [order[-2]], "keep", "lead")
    chosen, table = selection.select_run(store, run.id, "ratio", 0.25, keep_flagged=True)
    assert chosen.label_policy["rows"] == {"adjudicated": 1, "unanimous": 0, "majority": 2, "unresolved": 1}
    saved = selection.save(store, run.id, "cut", chosen, table).selection
    package = ExportPackage(store, run, saved, "alpaca", False)
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_bytes(labelling.labels_file(store, run.id))
    out = tmp_path / "cli.jsonl"
    assert main(["rank", str(path), "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu",
                 "--ratio", "0.25", "--keep-flagged", "--dedup", "none", "--lang", "any",
                 "--labels", str(labels_file), "--out", str(out)]) == 0, capsys.readouterr().err
    cli = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    app = package.manifest()
    assert package.jsonl() == out.read_bytes()
    assert cli["selected_ids_sha256"] == app["selected_ids_sha256"]
    assert cli["selection"]["labels"] == app["selection"]["labels"]
    assert app["saved"]["label_events"]["events"] == 11
    assert app["scope"] == cli["scope"] == {"sample": False, "rows": 12, "of": 12}


def test_a_sample_run_says_so_on_select_export_and_in_the_manifest(store, tmp_path, tiny_checkpoint):
    """Found 5: a 5-row sample of 12 read as a cut of the data set."""
    dataset = importing.import_file(store, pool(tmp_path, "pool.jsonl"))
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", sample=5,
                       launch=False)
    assert run_job(store, run.job_id).status == "done"
    at = page("select", run_id=run.id)
    assert any("sample of 5 of 12 rows" in t for t in texts(at.warning))
    assert any("sample of 5 of 12 rows" in option for option in chooser(at, "run").options)
    at.button(key="save_selection").click().run()
    at.switch_page("pages/export.py").run()
    assert any("sample of 5 of 12 rows" in t for t in texts(at.warning))
    assert at.get("download_button")[0].proto.disabled
    at.checkbox(key="export_sample").check().run()
    assert not at.get("download_button")[0].proto.disabled
    saved = selections.list_selections(store, run.id)[0]
    manifest = ExportPackage(store, runs.get_run(store, run.id), saved, "alpaca", False).manifest()
    assert manifest["scope"] == {"sample": True, "rows": 5, "of": 12, "seed": 0}


def test_a_second_start_of_the_same_run_joins_the_first(store, tmp_path, tiny_checkpoint):
    """Found 7: a double click on Start scoring created two runs of the same data, ranker and precision."""
    dataset = importing.import_file(store, pool(tmp_path, "pool.jsonl"))
    start = dict(model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    made = []
    threads = [threading.Thread(target=lambda: made.append(submit_score(store, dataset.id, **start).id))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and len(runs.list_runs(store)) == 1
    sample = submit_score(store, dataset.id, sample=5, **start)  # a sample is another run
    assert sample.id != made[0] and submit_score(store, dataset.id, sample=5, **start).id == sample.id
    assert run_job(store, runs.get_run(store, made[0]).job_id).status == "done"
    assert submit_score(store, dataset.id, **start).status == "done"  # finished: a new start answers from the store


def test_migration_0003_keeps_todays_labels_as_history(store, two_runs):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from db.store import MIGRATIONS, migrate

    first, _ = two_runs
    ids = runs.run_scores(store, first.id)[0][:2].tolist()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
        connection.execute(text("INSERT INTO labels (example_id, label, note, annotator, created_at) VALUES "
                                "(:a, 'keep', 'fine', 'ann', '2026-01-01'), (:b, 'drop', NULL, 'ann', '2026-01-02'), "
                                "(:a, 'flag', NULL, 'bob', '2026-01-03')"), {"a": ids[0], "b": ids[1]})
        connection.commit()
    migrate(store)
    assert sorted(labels.run_annotations(store, first.id)) == sorted([(ids[0], "ann", "keep"), (ids[1], "ann", "drop"),
                                                                      (ids[0], "bob", "flag")])
    assert [(e.label, e.note, a.kind) for e, a in labels.history(store, ids[0])] == [("flag", None, "import"),
                                                                                   ("keep", "fine", "import")]
    assert labels.count_events(store) == 3
    assert labelling.undo_offer(store, first.id, "ann") is None  # imported labels are not an undoable action
