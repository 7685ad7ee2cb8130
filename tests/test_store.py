"""The repository API, run against SQLite and against a live PostgreSQL server (.ci/run starts one)."""
from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from db import cleaning, datasets, jobs, labels, maps, open_store, rankers, runs, selections
from scar_core.jobs import datasets as importing, labelling, selection
from db.models import Adjudication, Base, Dataset, Example, LabelAction, Result, Run
from db.runs import ResultFilter
from scar_core.errors import ScarError
from scar_core.example import Example as CoreExample
from scar_core.load import LoadResult
from scar_core.scoring_rule import SCORING_RULE
from tests.conftest import postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh, migrated store: a new SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield open_store(str(tmp_path / "store.db"))
        return
    server = postgres_url()
    name = f"scar_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))  # a generated identifier, never user input
    s = open_store(server.rsplit("/", 1)[0] + "/" + name)
    yield s
    s.dispose()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def dataset_file(tmp_path):
    rows = [{"instruction": f"Question {i}?", "output": f"Answer {i}. " * (1 + i % 5),
             "source": "alpha" if i % 2 else "beta"} for i in range(40)]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def scored_run(store, dataset_id: int, precision: str = "fp32", weights: str = "a" * 64):
    """A run with a result per example: score = position, vectors = position in every component."""
    ranker = rankers.register_ranker(store, "r", "/r", weights, "tiny")
    run = runs.create_run(store, dataset_id, ranker.id, "cpu", precision)
    rows = [{"example_id": e.id, "score": float(e.position), "v_lf": runs.pack(np.full(8, e.position / 10)),
             "v_is": runs.pack(np.full(8, -e.position / 10))} for e in runs.missing_examples(store, run.id)]
    with store.write() as session:
        runs.add_results(session, run.id, rows)
    return run


def test_schema_matches_models_and_sqlite_settings(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
        if store.is_sqlite:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_import_stores_dataset_examples_and_reuses_same_file(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    assert (ds.name, ds.format, ds.row_count, ds.example_count, ds.rejected) == ("pairs.jsonl", "alpaca", 40, 40, [])
    assert len(ds.sha256) == 64
    page = datasets.examples(store, ds.id, offset=10, limit=3)
    assert [e.position for e in page] == [10, 11, 12]
    assert page[0].instruction == "Question 10?" and page[0].meta["where"] == "line 11"
    assert datasets.to_core(page[0]).id == page[0].content_id == CoreExample("Question 10?", page[0].response).id
    assert datasets.sources(store, ds.id) == ["alpha", "beta"]
    assert importing.import_file(store, dataset_file).id == ds.id
    assert importing.import_file(store, dataset_file, reuse=False).id != ds.id


def test_lenient_import_keeps_rejected_rows_with_reasons(store, tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"\n{"instruction": "d", "output": "e"}\n')
    ds = importing.import_file(store, path, lenient=True)
    assert ds.example_count == 2 and ds.row_count == 3
    assert ds.rejected[0]["where"] == "line 2" and "JSON" in ds.rejected[0]["reason"]


def _counts(store) -> tuple[int, int]:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Dataset)), s.scalar(select(func.count()).select_from(Example))


def test_failed_import_changes_nothing(store, dataset_file, tmp_path):
    importing.import_file(store, dataset_file)
    before = _counts(store)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n')
    with pytest.raises(ScarError, match="line 2"):
        importing.import_file(store, bad)
    # A failure inside the transaction, after the dataset row and most examples were written:
    examples = [CoreExample(f"q{i}", f"r{i}") for i in range(30)] + [CoreExample("q", "r", meta={"x": {1, 2}})]
    with pytest.raises(Exception):
        importing.import_loaded(store, LoadResult(dataset_file, "alpaca", examples, 31))
    assert _counts(store) == before


def test_results_page_filters_sorts_and_counts(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    top = runs.results_page(store, run.id, limit=5)
    assert [r["score"] for r in top] == [39.0, 38.0, 37.0, 36.0, 35.0]
    assert runs.results_page(store, run.id, sort="score_asc", offset=2, limit=2)[0]["score"] == 2.0
    assert [r["position"] for r in runs.results_page(store, run.id, sort="position", limit=3)] == [0, 1, 2]
    assert runs.count_results(store, run.id) == 40
    assert runs.count_results(store, run.id, ResultFilter(source="alpha")) == 20
    assert runs.count_results(store, run.id, ResultFilter(score_min=10, score_max=19.5)) == 10
    # text search is case-insensitive and treats % and _ literally
    assert runs.count_results(store, run.id, ResultFilter(search="question 3")) == 11  # 3, 30..39
    assert runs.count_results(store, run.id, ResultFilter(search="%")) == 0
    ids = [r["example_id"] for r in runs.results_page(store, run.id, sort="position", limit=40)]
    lasso = ResultFilter(ids=ids[5:9] + list(range(10 ** 6, 10 ** 6 + 40000)))  # far beyond driver parameter limits
    assert sorted(r["position"] for r in runs.results_page(store, run.id, lasso)) == [5, 6, 7, 8]
    both = ResultFilter(source="beta", score_min=30, ids=ids)
    assert [r["score"] for r in runs.results_page(store, run.id, both)] == [38.0, 36.0, 34.0, 32.0, 30.0]
    with pytest.raises(ScarError, match="sort"):
        runs.results_page(store, run.id, sort="bogus")


def test_flags_labels_and_their_filters(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    ids = [r["example_id"] for r in runs.results_page(store, run.id, sort="position", limit=40)]
    # ids[0] and ids[2] form a duplicate cluster (not exact copies); scores rise with position, so ids[2] is kept
    cleaning.save_cleaning(store, {ids[0]: ({}, 0, 0), ids[1]: ({"language": {"language": "fr"}}, None, None),
                                   ids[2]: ({}, 0, 2)})
    table = selection.run_table(store, run.id)
    flags = dict(zip(table["example_id"], table["flags"]))
    assert (flags[ids[0]], flags[ids[1]], flags[ids[2]]) == ("near", "language", "")
    assert selection.flag_names(table) == ["language", "near"] and selection.flagged_ids(table, "near") == [ids[0]]
    # Labels are an append-only history of actions on a run; the current verdicts (one per annotator)
    # are derived from it, and a label policy turns them into one label per example.
    assert "1 example drop" in labelling.label(store, run.id, [ids[3]], "drop", "ana", note="off-topic")
    labelling.label(store, run.id, [ids[4]], "keep", "ana")
    labelling.label(store, run.id, [ids[4]], "flag", "ben")
    labelling.label(store, run.id, [ids[3]], "keep", "ana")  # relabel replaces the current verdict
    decided = labelling.resolution(store, run.id)
    all_ids = runs.run_scores(store, run.id)[0].tolist()
    assert labelling.label_filter(decided, "drop", all_ids) == []
    # ids[4] is ana keep / ben flag: a tie the default policy leaves unresolved (the old filter counted
    # it under keep because one annotator said keep; now it is a conflict and only ids[3] is keep)
    assert labelling.label_filter(decided, "keep", all_ids) == [ids[3]]
    assert labelling.label_filter(decided, "conflict", all_ids) == [ids[4]]
    assert labelling.label_filter(decided, "flag", all_ids) == []
    assert sorted(labelling.label_filter(decided, "none", all_ids)) == sorted(set(all_ids) - {ids[3], ids[4]})
    assert len(labelling.label_filter(decided, "none", all_ids)) == 38
    assert (decided.summary(ids[3]), decided.summary(ids[4]), decided.summary(ids[0])) == ("keep", "1 flag / 1 keep", "")
    assert decided.counts() == {"adjudicated": 0, "unanimous": 1, "majority": 0, "unresolved": 1}
    row = runs.results_page(store, run.id, ResultFilter(ids=[ids[4]]))[0]
    assert "label" not in row and row["flags"] == {}
    assert "label" not in runs.results_page(store, run.id, limit=1)[0]
    assert not hasattr(ResultFilter(), "label")
    assert {(lb.annotator, lb.label) for lb in labels.labels_for(store, [ids[4]])} == {("ana", "keep"), ("ben", "flag")}
    assert [(lb.annotator, lb.label, lb.note) for lb in labels.labels_for(store, [ids[3]])] == [("ana", "keep", None)]
    # the history keeps both of ana's verdicts on ids[3], newest first
    assert [(e.annotator, e.previous_label, e.label, e.note, a.run_id) for e, a in labels.history(store, ids[3])] == \
        [("ana", "drop", "keep", None, run.id), ("ana", None, "drop", "off-topic", run.id)]
    # a lead's adjudication settles the conflict and comes first in the policy
    labelling.adjudicate(store, run.id, [ids[4]], "drop", "lea")
    decided = labelling.resolution(store, run.id)
    assert labelling.label_filter(decided, "drop", all_ids) == [ids[4]]
    assert labelling.label_filter(decided, "conflict", all_ids) == []
    assert decided.summary(ids[4]) == "→ drop (lead; 1 flag / 1 keep)"
    assert {(lb.annotator, lb.label) for lb in labels.labels_for(store, [ids[4]])} == {("ana", "keep"), ("ben", "flag")}
    with pytest.raises(ScarError):
        labelling.label(store, run.id, [ids[0]], "maybe", "ana")
    with pytest.raises(ScarError):
        labels.record(store, run.id, "ana", [ids[0]], "maybe", description="bad")
    with pytest.raises(ScarError, match="label filter"):
        labelling.label_filter(decided, "maybe", all_ids)
    assert labels.labels_for(store, [ids[0]]) == [] and labels.history(store, ids[0]) == []


def test_label_undo_reverts_only_my_latest_action_on_this_run(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    other = scored_run(store, ds.id, precision="bf16")
    ids = [r["example_id"] for r in runs.results_page(store, run.id, sort="position", limit=40)]
    first = labels.record(store, run.id, "ana", ids[:3], "keep", description="labelled 3 examples keep")
    assert (first.action.count, first.unchanged, first.action.kind) == (3, 0, "bulk")
    again = labels.record(store, run.id, "ana", ids[:4], "keep", description="labelled 4 examples keep")
    assert (again.action.count, again.unchanged) == (1, 3)  # only ids[3] changed
    labels.record(store, run.id, "ben", [ids[0]], "drop", description="labelled 1 example drop")
    labels.record(store, other.id, "ana", [ids[5]], "flag", description="labelled 1 example flag")
    assert labelling.undo_offer(store, run.id, "ana") == "labelled 4 examples keep"
    assert labelling.undo_offer(store, run.id, "cy") is None
    said = labelling.undo(store, run.id, "ana")
    assert said == "Undone: labelled 4 examples keep (1 reverted)."
    mine = {lb.example_id: lb.label for lb in labels.labels_for(store, ids) if lb.annotator == "ana"}
    assert mine == {ids[0]: "keep", ids[1]: "keep", ids[2]: "keep", ids[5]: "flag"}  # other run's stays
    assert [(lb.annotator, lb.label) for lb in labels.labels_for(store, [ids[0]]) if lb.annotator == "ben"] == [("ben", "drop")]
    assert labelling.undo_offer(store, run.id, "ana") == "labelled 3 examples keep"
    labels.record(store, run.id, "ana", [ids[1]], "drop", description="labelled 1 example drop")
    assert labelling.undo(store, run.id, "ana") == "Undone: labelled 1 example drop (1 reverted)."
    assert {lb.example_id: lb.label for lb in labels.labels_for(store, [ids[1]])} == {ids[1]: "keep"}
    # ana's verdict on ids[1] changes on the other run (a verdict is per annotator, not per run): undoing
    # the 3-keep action on this run leaves that newer verdict as it is and counts it
    labels.record(store, other.id, "ana", [ids[1]], "flag", description="labelled 1 example flag")
    assert labelling.undo(store, run.id, "ana") == \
        "Undone: labelled 3 examples keep (2 reverted; 1 left as they are, changed again since)."
    mine = {lb.example_id: lb.label for lb in labels.labels_for(store, ids) if lb.annotator == "ana"}
    assert mine == {ids[1]: "flag", ids[5]: "flag"}
    assert labelling.undo_offer(store, run.id, "ana") is None  # every action of ana's on this run is undone
    assert labelling.undo_offer(store, other.id, "ana") == "labelled 1 example flag"
    assert labelling.undo(store, run.id, "cy") == "Nothing of yours to undo on this run."
    assert labels.labelled_by(store, other.id, "ana") == {ids[1], ids[5]}  # the runs share the examples
    assert len(labels.history(store, ids[3])) == 2  # given and withdrawn: history is never deleted


def test_scores_vectors_histogram_and_maps(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    ids, scores = runs.run_scores(store, run.id)
    assert scores.dtype == np.float32 and scores.tolist() == [float(i) for i in range(40)]
    v_ids, v = runs.run_vectors(store, run.id, "lf")
    assert v.shape == (40, 8) and np.allclose(v[:, 0], np.arange(40) / 10, atol=2e-3)
    arrays = runs.run_results(store, run.id)
    assert arrays["score"].tolist() == scores.tolist() and np.array_equal(arrays["example_id"], ids)
    assert np.array_equal(arrays["v_lf"], v) and arrays["v_is"].shape == (40, 8)
    assert not arrays["truncated_response"].any()
    s_ids, sample = runs.run_vectors(store, run.id, "is", sample=7, seed=3)
    assert sample.shape == (7, 8) and set(s_ids) <= set(ids)
    assert np.array_equal(s_ids, runs.run_vectors(store, run.id, "is", sample=7, seed=3)[0])
    xy = np.stack([np.arange(40), -np.arange(40)], axis=1).astype(np.float32)
    maps.save_map(store, run.id, "lf", v_ids, xy)
    maps.save_map(store, run.id, "lf", v_ids[:10], xy[:10])  # replaces the earlier layout
    points = maps.map_points(store, run.id, "lf")
    assert len(points["x"]) == 10 and points["score"].tolist() == points["x"].tolist()
    assert len(maps.map_points(store, run.id, "is")["x"]) == 0


def test_results_never_duplicate(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    again = [{"example_id": r["example_id"], "score": -1.0} for r in runs.results_page(store, run.id, limit=40)]
    with store.write() as session:
        runs.add_results(session, run.id, again)
    assert runs.count_done(store, run.id) == 40 and runs.run_scores(store, run.id)[1].min() == 0
    with pytest.raises(IntegrityError):
        with store.write() as session:
            session.add(Result(run_id=run.id, example_id=again[0]["example_id"], score=1.0))


def test_cache_copies_by_content_ranker_precision_and_engine(store, dataset_file, tmp_path, monkeypatch):
    ds = importing.import_file(store, dataset_file)
    first = scored_run(store, ds.id)
    # A different file sharing 20 pairs with the first one.
    rows = [json.loads(line) for line in open(dataset_file)][:20]
    rows += [{"instruction": f"New {i}?", "output": "New."} for i in range(5)]
    other = importing.import_file(store, write_jsonl(tmp_path / "other.jsonl", rows))
    same = runs.create_run(store, other.id, first.ranker_id, "cpu", "fp32")
    assert runs.fill_from_cache(store, same.id) == 20
    assert runs.fill_from_cache(store, same.id) == 0
    assert len(runs.missing_examples(store, same.id)) == 5
    assert runs.run_scores(store, same.id)[1].tolist() == [float(i) for i in range(20)]
    bf16 = runs.create_run(store, other.id, first.ranker_id, "cpu", "bf16")
    other_ranker = rankers.register_ranker(store, "r2", "/r2", "b" * 64, "tiny")
    changed = runs.create_run(store, other.id, other_ranker.id, "cpu", "fp32")
    assert runs.fill_from_cache(store, bf16.id) == 0 and runs.fill_from_cache(store, changed.id) == 0
    other_engine = runs.create_run(store, other.id, first.ranker_id, "cpu", "fp32", engine="int8")
    assert runs.fill_from_cache(store, other_engine.id) == 0  # int8's NLLs are not torch's
    with store.write() as session:  # an int8 run with the same rows earlier: copied, int8 is bit-stable too
        session.get(Run, first.id).engine = "int8"
    assert runs.fill_from_cache(store, runs.create_run(store, other.id, first.ranker_id, "cpu", "fp32", engine="int8").id) == 20
    monkeypatch.setattr(runs, "BIT_STABLE_ENGINES", ("torch",))  # an engine not shown to be bit-stable: nothing
    assert runs.fill_from_cache(store, runs.create_run(store, other.id, first.ranker_id, "cpu", "fp32", engine="int8").id) == 0


def test_cache_never_mixes_scores_of_an_older_scoring_rule(store, dataset_file, tmp_path):
    """Rows scored before per-text padding (rule 1, kept by migration 0004) may differ in their last
    bits from today's: a new run copies none of them, so it equals a fresh CLI run bit for bit."""
    ds = importing.import_file(store, dataset_file)
    first = scored_run(store, ds.id)
    with store.write() as session:
        session.get(Run, first.id).rule = 1
    again = runs.create_run(store, ds.id, first.ranker_id, "cpu", "fp32")
    assert again.rule == SCORING_RULE == 3
    assert runs.fill_from_cache(store, again.id) == 0
    assert runs.start_or_join(store, ds.id, first.ranker_id, "cpu", "fp32", {}, {})[0].rule == SCORING_RULE


def test_selections_exports_and_cascading_delete(store, dataset_file):
    ds = importing.import_file(store, dataset_file)
    run = scored_run(store, ds.id)
    ids = runs.run_scores(store, run.id)[0][:5].tolist()
    sel = selections.save_selection(store, run.id, "top", "ratio", {"ratio": 0.1}, ids)
    assert sel.version == 1
    with pytest.raises(selections.NameTaken) as taken:  # a used name is refused unless replacing
        selections.save_selection(store, run.id, "top", "topk", {"topk": 2}, ids[:2])
    assert (taken.value.latest.id, taken.value.latest.version) == (sel.id, 1)
    # replacing adds version 2; version 1 stays as it was
    second = selections.save_selection(store, run.id, "top", "topk", {"topk": 2}, ids[:2], replace=True)
    assert second.id != sel.id and (second.name, second.version, second.rule) == ("top", 2, "topk")
    assert selections.get_selection(store, second.id).example_ids == ids[:2]
    assert selections.get_selection(store, sel.id).example_ids == ids
    assert [s.id for s in selections.list_selections(store, run.id)] == [second.id]
    assert [(s.id, s.version) for s in selections.list_selections(store, run.id, versions=True)] == \
        [(sel.id, 1), (second.id, 2)]
    export = selections.record_export(store, "/tmp/out.jsonl", "alpaca", {"kept": 2}, run.id, second.id)
    assert [e.id for e in selections.list_exports(store, run.id)] == [export.id]
    labelling.label(store, run.id, [ids[0]], "keep", "ana")
    labelling.adjudicate(store, run.id, [ids[1]], "drop", "lea")
    datasets.delete_dataset(store, ds.id)
    assert runs.get_run(store, run.id) is None and _counts(store) == (0, 0)
    assert selections.list_selections(store, run.id, versions=True) == []
    assert selections.list_exports(store)[0].run_id is None
    # the examples' labels, adjudications and label events go with them; the actions stay, run-less
    assert labels.labels_for(store, ids) == [] and labels.history(store, ids[0]) == [] and labels.count_events(store) == 0
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Adjudication)) == 0
        assert [(a.run_id, a.annotator) for a in s.scalars(select(LabelAction).order_by(LabelAction.id))] == \
            [(None, "ana"), (None, "lea")]


def test_job_rows_claim_progress_cancel_and_stale(store):
    job = jobs.create_job(store, "score", {"x": 1})
    jobs.set_params(store, job.id, run_id=7)
    assert jobs.get_job(store, job.id).params == {"x": 1, "run_id": 7}
    claimed = jobs.claim(store, job.id)
    assert claimed.status == "running" and claimed.pid == os.getpid()
    with store.write() as session:
        assert jobs.report(session, job.id, 25, 100, 5.0, "scoring") is False
    row = jobs.get_job(store, job.id)
    assert (row.done, row.total, row.eta_s, row.message) == (25, 100, 15.0, "scoring")
    assert jobs.request_cancel(store, job.id).cancel_requested and jobs.heartbeat(store, job.id) is True
    jobs.finish(store, job.id, "cancelled")
    assert jobs.reset_for_resume(store, job.id).status == "queued"
    # A running job whose worker pid is gone is stale and becomes interrupted.
    other = jobs.create_job(store, "map")
    jobs.claim(store, other.id)
    with store.write() as session:
        session.get(jobs.Job, other.id).pid = 2 ** 22 + 12345  # above Linux's pid_max: never alive
    assert jobs.mark_stale(store) == [other.id]
    assert jobs.get_job(store, other.id).status == "interrupted"
    assert [j.kind for j in jobs.list_jobs(store)] == ["map", "score"]
    with pytest.raises(ScarError, match="no job"):
        jobs.claim(store, 999)


def test_migration_0002_turns_duplicate_flags_of_older_cleanings_into_clusters(store, dataset_file):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import update

    from db.store import MIGRATIONS, migrate

    ds = importing.import_file(store, dataset_file)
    rows = datasets.examples(store, ds.id, limit=4)
    keeper = rows[0].content_id
    old_flags = {rows[1].id: {"exact": {"kind": "exact", "duplicate_of": keeper, "similarity": 1.0}},
                 rows[2].id: {"near": {"kind": "near", "duplicate_of": keeper, "similarity": 0.8},
                              "language": {"kind": "language", "language": "de"}}}
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
        for example_id, flags in old_flags.items():
            connection.execute(update(Example).where(Example.id == example_id).values(flags=flags))
        connection.commit()
    migrate(store)
    after = datasets.examples(store, ds.id, limit=4)
    assert [(r.duplicate_cluster, r.exact_group) for r in after] == [(0, 0), (0, 0), (0, 2), (None, None)]
    assert [r.flags for r in after] == [{}, {}, {"language": {"kind": "language", "language": "de"}}, {}]
    table = selection.run_table(store, scored_run(store, ds.id).id)  # scores rise with position: rows[1] is kept
    assert table["flags"].tolist()[:4] == ["exact", "", "language, near", ""]
