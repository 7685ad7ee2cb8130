"""Signals beside the SCAR score (issue 27): computed ones (length, kNN novelty, exemplar similarity,
IFD) and scores imported from another tool, stored per row with what made them; imported files with
unknown or missing ids are refused naming the file and line, storing nothing; a weighted blend drives
the same cut from the app's orchestration and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from db import runs, signals as stored
from scar_core import signals
from scar_core.cli import main
from scar_core.errors import ScarError
from scar_core.jobs import signals as signal_jobs
from scar_core.jobs.selection import select_run
from tests.conftest import score_file
from tests.test_one_rule import pool as one_rule_pool  # noqa: F401 (a fixture: a pool cleaning leaves rows out of)
from tests.test_trust import ROWS, pool


@pytest.fixture
def run(store, tmp_path, tiny_checkpoint):
    return score_file(store, pool(tmp_path, "pool.jsonl"), tiny_checkpoint)


def test_no_signal_can_take_a_column_of_the_run_table(store, run):
    """RESERVED is written out by hand: it must hold every column the run table has, or a signal named like
    one would shadow it when signals are merged in as columns (with_signals)."""
    from scar_core.jobs.selection import run_table

    assert set(run_table(store, run.id).columns) <= set(signal_jobs.RESERVED)
    with pytest.raises(ScarError, match="words"):
        signal_jobs.add_signal(store, run.id, "length", name="words", made_by="lead")


def content_ids(store, run) -> dict[int, str]:
    from db import datasets
    return {e.id: e.content_id for e in datasets.examples(store, run.dataset_id, limit=None)}


def write_scores(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_knn_novelty_and_exemplar_similarity_find_the_odd_row_and_the_near_ones():
    rng = np.random.default_rng(0)
    vectors = np.r_[rng.normal([5, 0, 0], 0.1, (10, 3)), [[0, 0, 5]]]  # ten alike, one apart
    novelty = signals.knn_novelty(vectors, k=3)
    assert novelty.argmax() == 10 and novelty[10] > 0.9 > novelty[:10].max()
    near = signals.exemplar_similarity(vectors, vectors[[10]])
    assert near.argmax() == 10 and near[10] == pytest.approx(1.0) and near[:10].max() < 0.2
    with pytest.raises(ScarError, match="at least one exemplar"):
        signals.exemplar_similarity(vectors, np.zeros((0, 3)))


def test_combine_z_scores_each_weighted_column_and_scar_alone_orders_as_the_score():
    score, other = np.array([3.0, 1.0, 2.0, np.nan]), np.array([0.0, 100.0, 50.0, 1.0])
    alone = signals.combine({"scar": score, "x": other}, {"scar": 1})
    assert np.argsort(-alone[:3]).tolist() == [0, 2, 1] and np.isnan(alone[3])
    both = signals.combine({"scar": score, "x": other}, {"scar": 1, "x": 1})
    assert np.allclose(both[:3], (score[:3] - 2) / np.std(score[:3]) + (other[:3] - 50) / np.std(other[:3]))
    with pytest.raises(ScarError, match="no signal named 'y'"):
        signals.combine({"scar": score}, {"y": 1})
    assert signals.parse_weights("scar=1, novelty = 0.5,len") == {"scar": 1.0, "novelty": 0.5, "len": 1.0}
    with pytest.raises(ScarError, match="not a number"):
        signals.parse_weights("scar=high")


def test_imported_scores_with_unknown_missing_or_bad_rows_say_where_and_store_nothing(store, run, tmp_path):
    ids = content_ids(store, run)
    good = [{"id": c, "score": float(i)} for i, c in enumerate(ids.values())]
    unknown = write_scores(tmp_path / "unknown.jsonl", good[:5] + [{"id": "not-an-id", "score": 1}] + good[5:])
    with pytest.raises(ScarError, match=r"unknown\.jsonl, line 6: field 'id': 'not-an-id' is not an example of this pool"):
        signal_jobs.import_scores(store, run.id, unknown, "tool", made_by="ann")
    missing = write_scores(tmp_path / "missing.jsonl", good[1:])
    with pytest.raises(ScarError, match=r"missing\.jsonl: 1 of the pool's 12 scored examples have no score"):
        signal_jobs.import_scores(store, run.id, missing, "tool", made_by="ann")
    bad = write_scores(tmp_path / "bad.jsonl", good[:2] + [{"id": good[2]["id"], "score": "high"}])
    with pytest.raises(ScarError, match=r"bad\.jsonl, line 3: field 'score': not a number"):
        signal_jobs.import_scores(store, run.id, bad, "tool", made_by="ann")
    csv = tmp_path / "twice.csv"
    csv.write_text("id,score\n" + "".join(f"{r['id']},{r['score']}\n" for r in good[:3] + good[:1]))
    with pytest.raises(ScarError, match=r"twice\.csv, row 4, line 5: field 'id': id '.*' appears twice"):
        signal_jobs.import_scores(store, run.id, csv, "tool", made_by="ann")
    assert stored.run_signals(store, run.id) == [] and len(stored.signal_frame(store, run.id)) == 0
    added = signal_jobs.import_scores(store, run.id, write_scores(tmp_path / "good.jsonl", good), "tool", made_by="ann")
    assert added.rows == 12 and added.signal.settings == {"file": "good.jsonl", "rows": 12}
    frame = stored.signal_frame(store, run.id).set_index("example_id")
    assert {i: frame.loc[i, "tool"] for i in ids} == {i: float(n) for n, i in enumerate(ids)}
    with pytest.raises(ScarError, match="exists already"):  # a name is never overwritten
        signal_jobs.import_scores(store, run.id, write_scores(tmp_path / "again.jsonl", good), "tool", made_by="bob")
    assert stored.run_signals(store, run.id)[0].made_by == "ann"


@pytest.fixture
def chat_lm(tiny_lm, tmp_path):
    """The tiny LM with a chat template, so an empty instruction still makes a prompt (as SmolLM2's does)."""
    import shutil
    from transformers import AutoTokenizer
    path = tmp_path / "chat_lm"
    shutil.copytree(tiny_lm, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}[assistant] "
    tokenizer.save_pretrained(path)
    return path


def test_computed_signals_are_stored_with_their_settings(store, run, chat_lm, tiny_lm):
    ids, scores = runs.run_scores(store, run.id)
    length = signal_jobs.add_signal(store, run.id, "length", made_by="ann")
    novelty = signal_jobs.add_signal(store, run.id, "novelty", made_by="ann", k=3)
    near = signal_jobs.add_signal(store, run.id, "exemplar", name="like-first", made_by="ann",
                                  exemplar_ids=[int(ids[0])], exemplar_texts=["Sure! Here is how:\n\n1. A step."])
    with pytest.raises(ScarError, match="no chat template"):
        signal_jobs.add_signal(store, run.id, "ifd", made_by="ann", lm=str(tiny_lm), device="cpu", precision="fp32")
    ifd = signal_jobs.add_signal(store, run.id, "ifd", made_by="ann", lm=str(chat_lm), device="cpu", precision="fp32")
    assert [s.name for s in signal_jobs.run_signals(store, run.id)] == ["length", "novelty", "like-first", "ifd"]
    assert novelty.signal.settings["k"] == 3 and near.signal.settings["pasted"] == 1 and ifd.signal.settings["lm"] == str(chat_lm)
    frame = stored.signal_frame(store, run.id).set_index("example_id").loc[ids]
    from transformers import AutoTokenizer
    from scar_core.encoders import bundled_encoder_path
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_encoder_path()))
    by_id = {e: r["output"] for e, r in zip(content_ids(store, run), ROWS)}
    assert frame["length"].tolist() == [len(tokenizer(by_id[int(i)], add_special_tokens=False)["input_ids"]) for i in ids]
    assert (frame["ifd"] > 0).all() and frame["ifd"].std() > 0 and length.rows == novelty.rows == 12
    comparison = signal_jobs.compare_signal(store, run.id, "length")
    assert comparison.spearman is not None and len(comparison.example_ids) == 12


def test_a_blended_cut_follows_its_weights_and_records_them(store, run, tmp_path):
    ids = content_ids(store, run)
    order = list(ids)  # imported score = file position: the blend with scar=0 keeps the last rows
    signal_jobs.import_scores(store, run.id, write_scores(tmp_path / "s.jsonl", [
        {"id": ids[e], "score": float(n)} for n, e in enumerate(order)]), "pos", made_by="ann")
    chosen, table = select_run(store, run.id, "topk", 3, weights={"scar": 0, "pos": 1})
    assert sorted(table["example_id"].to_numpy()[chosen.kept].tolist()) == order[-3:]
    assert chosen.params()["blend"]["weights"] == {"scar": 0, "pos": 1}
    assert chosen.params()["blend"]["signals"]["pos"]["kind"] == "imported"
    plain, _ = select_run(store, run.id, "topk", 3)
    same, _ = select_run(store, run.id, "topk", 3, weights={"scar": 2})
    assert plain.kept.tolist() == same.kept.tolist() and "blend" not in plain.params()


def test_rank_cli_blends_imported_scores_like_the_app(store, run, tmp_path, tiny_checkpoint):
    """`rank --import-scores FILE:NAME --weights` keeps the rows the app's blended cut keeps."""
    ids = content_ids(store, run)
    scores_file = write_scores(tmp_path / "s.jsonl", [{"id": c, "score": float(-n)} for n, c in enumerate(ids.values())])
    signal_jobs.import_scores(store, run.id, scores_file, "tool", made_by="ann")
    chosen, table = select_run(store, run.id, "ratio", 0.25, use_labels=False, weights={"scar": 1, "tool": 1})
    from db import datasets
    asked = {e.id: e.instruction for e in datasets.examples(store, run.dataset_id, limit=None)}
    app_rows = {asked[int(i)] for i in table["example_id"].to_numpy()[chosen.kept]}
    out = tmp_path / "cut.jsonl"
    assert main(["rank", str(pool(tmp_path, "pool.jsonl")), "--model", str(tiny_checkpoint), "--device", "cpu",
                 "--precision", "fp32", "--ratio", "0.25", "--import-scores", f"{scores_file}:tool",
                 "--weights", "scar=1, tool=1", "--out", str(out)]) == 0
    assert {json.loads(line)["instruction"] for line in out.open()} == app_rows and len(app_rows) == 3
    manifest = json.loads((tmp_path / "cut.jsonl.manifest.json").read_text())
    assert manifest["selection"]["blend"]["weights"] == {"scar": 1.0, "tool": 1.0}


def test_select_page_adds_a_signal_and_cuts_on_a_blend(store, run):
    """On the Select page a lead adds the length signal and cuts on it alone: the longest rows are kept."""
    from tests.test_trust import page

    at = page("select", annotator="lead", run_id=run.id)
    at.radio(key="rule").set_value("topk").run()
    at.number_input(key="topk_number").set_value(3).run()
    at.selectbox(key="signal_kind").set_value("length").run()
    at.button(key="signal_add").click().run()
    assert not at.exception, at.exception
    assert any("Added signal 'length' (length) for 12 examples" in s.value for s in at.success)
    assert signal_jobs.run_signals(store, run.id)[0].made_by == "lead"
    at.text_input(key="signal_weights").set_value("scar=0, length=1").run()
    assert not at.exception, at.exception
    assert any("Cut on the blend {'scar': 0.0, 'length': 1.0}" in c.value for c in at.caption)
    frame = stored.signal_frame(store, run.id)
    longest = set(frame.sort_values("length", ascending=False, kind="stable")["example_id"].head(3))
    chosen, table = select_run(store, run.id, "topk", 3, weights={"scar": 0, "length": 1})
    assert set(table["example_id"].to_numpy()[chosen.kept]) == longest
    at.text_input(key="signal_weights").set_value("scar=1, nope=1").run()
    assert any("no signal named" in e.value and "nope" in e.value for e in at.error), [e.value for e in at.error]


def test_compare_page_sets_each_signal_of_run_a_against_its_score(store, tmp_path, tiny_checkpoint):
    from tests.test_trust import page

    first = score_file(store, pool(tmp_path, "a.jsonl"), tiny_checkpoint)
    score_file(store, pool(tmp_path, "b.jsonl", [{**r, "output": r["output"] + " More."} for r in ROWS]),
               tiny_checkpoint)
    signal_jobs.add_signal(store, first.id, "novelty", made_by="ann", k=3)
    at = page("compare")
    at.selectbox(key="compare_a").set_value(first.id).run()
    assert not at.exception, at.exception
    shown = next(d.value for d in at.dataframe if "signal" in d.value.columns)
    expected = signal_jobs.compare_signal(store, first.id, "novelty")
    assert shown["signal"].tolist() == ["novelty"]
    assert shown["Spearman with score"].iloc[0] == pytest.approx(expected.spearman)


def test_ifd_runs_as_a_background_job_and_a_cancel_stores_nothing(store, run, chat_lm):
    from scar_core.jobs.runner import run_job

    options = dict(lm=str(chat_lm), device="cpu", precision="fp32")
    cancelled = signal_jobs.submit_signal(store, run.id, "ifd", made_by="lead", launch=False, **options)
    from db.models import Job
    with store.write() as session:  # a cancel arriving once the worker runs: seen at its first progress report
        session.get(Job, cancelled.id).cancel_requested = True
    assert run_job(store, cancelled.id).status == "cancelled"
    assert signal_jobs.run_signals(store, run.id) == []
    job = signal_jobs.submit_signal(store, run.id, "ifd", name="difficulty", made_by="lead", launch=False, **options)
    done = run_job(store, job.id)
    assert done.status == "done" and done.result == {"signal": "difficulty", "rows": 12}
    assert (done.done, done.total) == (24, 24)  # two LM passes over 12 rows
    [signal] = signal_jobs.run_signals(store, run.id)
    assert (signal.name, signal.kind, signal.made_by) == ("difficulty", "ifd", "lead")
    with pytest.raises(ScarError, match="exists already"):  # refused before queueing a second job
        signal_jobs.submit_signal(store, run.id, "ifd", name="difficulty", made_by="ann", launch=False, **options)


def plotted(values) -> list:
    """A plotly JSON array as a list (plotly writes numpy arrays as base64 `bdata` with their dtype)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_explore_colours_filters_and_lists_signals_and_makes_one_from_a_lasso(store, tmp_path, tiny_checkpoint):
    """Any signal colours the maps, filters the table and shows as a column; rows lassoed on a map become
    exemplars of a new signal."""
    from tests.test_explore import frame, lasso
    from tests.test_trust import page

    run = score_file(store, pool(tmp_path, "pool.jsonl"), tiny_checkpoint, mapped=True)
    signal_jobs.add_signal(store, run.id, "novelty", made_by="ann", k=3)
    values = stored.signal_frame(store, run.id).set_index("example_id")["novelty"]
    at = page("explore", annotator="ann", run_id=run.id)
    at.radio(key="map_colour").set_value("signal: novelty").run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = next(t for t in spec["data"] if isinstance(t.get("marker", {}).get("color"), (list, dict)))
    coloured = dict(zip(plotted(points["customdata"]), plotted(points["marker"]["color"])))  # signal per point
    assert {int(i): round(c, 5) for i, c in coloured.items()} == {int(i): round(v, 5) for i, v in values.items()}
    grid = frame(at, "rank", "novelty")
    assert grid["novelty"].notna().all()
    at.selectbox(key="signal_filter").set_value("novelty").run()
    top = float(values.sort_values().iloc[-4])
    at.slider(key="signal_range::novelty").set_value((top, float(values.max()))).run()
    assert not at.exception, at.exception
    assert sorted(frame(at, "rank", "novelty")["novelty"].round(6)) == sorted(values[values >= top].round(6))
    picked = values.index[:3].tolist()
    lasso(at, 0, picked)
    at.button(key="pick_exemplars").click().run()
    assert not at.exception, at.exception
    made = [s for s in signal_jobs.run_signals(store, run.id) if s.kind == "exemplar"]
    assert len(made) == 1 and made[0].settings["exemplar_ids"] == picked and made[0].made_by == "ann"


def test_a_blend_cuts_the_same_rows_in_the_app_and_rank_when_cleaning_leaves_rows_out(tmp_path, capsys,
                                                                                       tiny_checkpoint, one_rule_pool):
    """Signals over a pool with duplicates, another language, an echo, an empty answer and a refusal: the
    z-scores come from the rows the cut may take and novelty's neighbours are the rows no flag of their own
    leaves out, in the app and in `rank` alike, so the blended cut keeps the same rows in the same order."""
    from db import open_store
    from scar_core.jobs.datasets import import_file
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score
    from tests.test_bundle import CLEAN

    path = one_rule_pool
    store = open_store(f"sqlite:///{tmp_path / 'studio.db'}")
    run = submit_score(store, import_file(store, path).id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       clean=CLEAN, launch=False)
    assert run_job(store, run.job_id).status == "done"
    table = select_run(store, run.id, "ratio", 1.0, use_labels=False)[1]
    assert table["left_out_by"].notna().sum() >= 3 and (table["duplicate_cluster"] >= 0).any()
    ids = content_ids(store, runs.get_run(store, run.id))
    scores_file = write_scores(tmp_path / "tool.jsonl", [{"id": c, "score": (n * 7) % 11} for n, c in enumerate(ids.values())])
    signal_jobs.import_scores(store, run.id, scores_file, "tool", made_by="lead")
    signal_jobs.add_signal(store, run.id, "length", made_by="lead")
    signal_jobs.add_signal(store, run.id, "novelty", made_by="lead")
    from db import datasets
    text = {e.id: (e.instruction, e.response) for e in datasets.examples(store, run.dataset_id, limit=None)}
    for weights, rule in (("scar=1, novelty=1", ("--ratio", "0.3")), ("scar=0.5, length=1, tool=-1", ("--topk", "5"))):
        chosen, table = select_run(store, run.id, rule[0].strip("-"), float(rule[1]), use_labels=False,
                                   weights=signals.parse_weights(weights))
        app = [text[int(i)] for i in table["example_id"].to_numpy()[chosen.kept]]
        out = tmp_path / f"{rule[0].strip('-')}.jsonl"
        assert main(["rank", str(path), "--model", str(tiny_checkpoint), "--device", "cpu", "--precision", "fp32",
                     *rule, "--signal", "length", "--signal", "novelty", "--import-scores", f"{scores_file}:tool",
                     "--weights", weights, "--out", str(out)]) == 0, capsys.readouterr().err
        cli = [(r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""), r["output"])
               for r in map(json.loads, out.open())]
        assert [pair for pair in app] == cli, weights
        manifest = json.loads(Path(f"{out}.manifest.json").read_text())
        assert manifest["selection"]["blend"] == chosen.blend, weights  # the same record of how it was blended
