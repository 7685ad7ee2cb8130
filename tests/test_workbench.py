"""Issue 20, part B: the Rank page's honest progress, background cleaning, and the housekeeping the
issue found (a stale dataset choice, Streamlit's own page list on a bookmarked page, zombie workers,
watched folders, uploads inside the repository, selections sharing a name)."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from scar_core.jobs import datasets as importing
from tests.conftest import chooser, fragment_names

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
ROWS = [{"instruction": f"Question {i}?", "output": f"Answer number {i}, in a short sentence."} for i in range(6)]


def pool(folder: Path, name: str, rows: list[dict] = ROWS) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def texts(elements) -> list[str]:
    """Element values without the app's markdown escapes."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def test_rank_page_preselects_the_dataset_just_imported(store, tmp_path):
    importing.import_file(store, pool(tmp_path, "first.jsonl"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/datasets.py").run()  # the app opens on its Start page
    assert chooser(at, "dataset").value == 1  # the Library tab's chooser holds dataset 1
    at.text_input(key="server_path").set_value(str(pool(tmp_path, "second.jsonl", ROWS[:3]))).run()
    at.button(key="import_0").click().run()
    assert texts(at.success) == ["Imported second.jsonl as data set #2: 3 pairs from 3 rows."]
    at.switch_page("pages/rank.py").run()
    assert chooser(at, "dataset").value == 2
    assert not at.exception


def test_rank_page_says_when_this_machine_scores_in_int8(store, tmp_path, monkeypatch):
    importing.import_file(store, pool(tmp_path, "first.jsonl"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/rank.py").run()
    assert not [c for c in texts(at.caption) if "int8" in c]  # the suite pins torch (conftest)
    monkeypatch.setenv("SCAR_ENGINE", "int8")  # as a CPU with VNNI and no native bf16 would choose
    at.run()
    assert [c for c in texts(at.caption) if "runs in int8 through CTranslate2" in c]
    assert not at.exception


def test_a_bookmarked_page_on_a_fresh_server_runs_inside_the_app(store):
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/explore.py").run()  # the first run of the server asks for /explore
    assert [t.key for t in at.sidebar.text_input] == ["_annotator"]
    assert texts(at.info) == ["No scored runs yet: score a dataset on the Rank page."]
    assert not at.exception


def test_uploads_exports_and_rankers_stay_out_of_the_source_tree(monkeypatch, tmp_path):
    from db import browse
    from db.store import DEFAULT_FILE, resolve_url
    from scar_core.jobs.train import ranker_folder

    monkeypatch.delenv(browse.UPLOADS_ENV, raising=False)
    monkeypatch.delenv(browse.DATA_ENV, raising=False)
    monkeypatch.chdir(ROOT)
    default = SimpleNamespace(url=resolve_url(DEFAULT_FILE), is_sqlite=True)  # not opened: no file is made
    folders = [browse.upload_folder(default), browse.export_folder(default), ranker_folder(default, "mine")]
    for folder in folders:
        assert folder.is_relative_to(ROOT / "scar_studio-data")
        ignored = subprocess.run(["git", "check-ignore", "-q", str(folder / "file.jsonl")], cwd=ROOT)
        assert ignored.returncode == 0, f"{folder} would show in git status"
    monkeypatch.setenv(browse.DATA_ENV, str(tmp_path / "elsewhere"))
    assert browse.export_folder(default) == tmp_path / "elsewhere" / "exports"
    assert browse.upload_folder(default) == tmp_path / "elsewhere" / "uploads"


def test_finished_workers_are_reaped_not_left_as_zombies(store):
    from db import jobs
    from scar_core.jobs.runner import start_worker

    job = jobs.create_job(store, "no-such-kind")
    pid = start_worker(store, job.id)  # the worker fails the job at once and exits
    deadline = time.time() + 60
    while jobs.get_job(store, job.id).status != "failed" and time.time() < deadline:
        time.sleep(0.2)
    assert jobs.get_job(store, job.id).status == "failed"
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), Path(f"/proc/{pid}/stat").read_text()  # "Z": a zombie


def test_the_server_watches_no_files(monkeypatch):
    """Streamlit's watcher puts a recursive inotify watch on app.py's folder, .venv included (the
    folder blacklist only filters modules), so an idle server overflowed its queue and burned a core."""
    from streamlit import config
    from streamlit.watcher.path_watcher import NoOpPathWatcher, get_default_path_watcher_class

    monkeypatch.chdir(ROOT)
    config.get_config_options(force_reparse=True)
    try:
        assert config.get_option("server.fileWatcherType") == "none"
        assert get_default_path_watcher_class() is NoOpPathWatcher
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


def test_two_selections_of_a_dataset_cannot_share_a_name(store, tmp_path, tiny_checkpoint):
    from db import runs, selections
    from scar_core.errors import ScarError
    from scar_core.jobs.rankers import register_checkpoint

    dataset = importing.import_file(store, pool(tmp_path, "pairs.jsonl"))
    ranker = register_checkpoint(store, str(tiny_checkpoint))
    first, second = (runs.create_run(store, dataset.id, ranker.id, "cpu", precision, {}) for precision in
                     ("fp32", "bf16"))
    kept = selections.save_selection(store, first.id, "ratio-0.1", "ratio", {}, [1])
    with pytest.raises(ScarError, match=rf"already used on run {first.id}.*'ratio-0.1 \(run {second.id}\)'"):
        selections.save_selection(store, second.id, "ratio-0.1", "ratio", {}, [2])
    assert selections.save_selection(store, second.id, "ratio-0.1 (run 2)", "ratio", {}, [2]).id != kept.id
    with pytest.raises(selections.NameTaken):  # same run: refused unless replacing
        selections.save_selection(store, first.id, "ratio-0.1", "topk", {}, [1, 2])
    with pytest.raises(ScarError, match="already used on run"):  # replacing never takes another run's name
        selections.save_selection(store, second.id, "ratio-0.1", "ratio", {}, [2], replace=True)
    again = selections.save_selection(store, first.id, "ratio-0.1", "topk", {}, [1, 2], replace=True)
    assert again.id != kept.id and (again.version, again.rule) == (2, "topk") and again.created_at >= kept.created_at
    assert [(s.id, s.rule) for s in selections.list_selections(store, first.id)] == [(again.id, "topk")]
    assert selections.get_selection(store, kept.id).rule == "ratio"  # version 1 stays


LENGTHS = [{"instruction": f"Question {i}?", "output": "word " * (3 + 17 * (i % 5))} for i in range(20)]


def test_scoring_cleans_in_the_worker_in_named_phases_with_an_early_first_chunk(store, tmp_path, tiny_checkpoint,
                                                                                 monkeypatch):
    from db import jobs
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import FIRST_CHUNK_ROWS, submit_score

    dataset = importing.import_file(store, pool(tmp_path, "pairs.jsonl", LENGTHS))
    reports, report = [], jobs.report

    def recorded(session, job_id, done, total, rate, message=None, eta_s=None):
        reports.append((message, done, rate, eta_s))
        return report(session, job_id, done, total, rate, message, eta_s=eta_s)

    monkeypatch.setattr(jobs, "report", recorded)
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       clean={"dedup": "near", "lang": "any"}, launch=False)
    queued = jobs.get_job(store, run.job_id)
    assert queued.params["clean"] is None  # the page did not wait for cleaning
    assert (queued.message, queued.done, queued.total) == ("starting the worker", 0, len(LENGTHS))  # not 0/0
    committed = []
    job = run_job(store, run.job_id, progress=lambda done, total, rate: committed.append(done))
    assert job.status == "done", job.error
    assert job.params["clean"]["options"]["dedup"] == "near"
    phases = list(dict.fromkeys(m for m, *_ in reports))
    assert phases[:5] == ["starting the worker", "cleaning", "reading the rows", "loading the ranker", "scoring"]
    first_commit = next(k for k, (m, done, *_) in enumerate(reports) if m == "scoring" and done)
    assert all(rate is None for _, _, rate, _ in reports[:first_commit])  # no rate before one is measured
    assert committed[:2] == [FIRST_CHUNK_ROWS, len(LENGTHS)]
    first, second = reports[first_commit:first_commit + 2]
    assert first[1] == FIRST_CHUNK_ROWS and first[2] > 0 and first[3] > 0  # a first estimate, within seconds
    assert second[1] == len(LENGTHS) and second[2] > 0 and second[3] == 0 and job.result["chars_per_s"] > 0


def record_history(monkeypatch) -> list[bool]:
    """For each table the page draws, whether it was drawn inside a fragment: only a fragment reruns
    on its own, so the History table outside the progress fragment lagged the live bar."""
    import streamlit as st

    inside, drawn = [], []
    fragment, dataframe = st.fragment, st.dataframe

    def recording_fragment(function=None, **options):
        def wrap(body):
            def run(*args, **kwargs):
                inside.append(True)
                try:
                    return body(*args, **kwargs)
                finally:
                    inside.pop()
            return fragment(run, **options)
        return wrap(function) if function else wrap

    def recording_dataframe(*args, **kwargs):
        drawn.append(bool(inside))
        return dataframe(*args, **kwargs)

    monkeypatch.setattr(st, "fragment", recording_fragment)
    monkeypatch.setattr(st, "dataframe", recording_dataframe)
    return drawn


def test_a_sample_run_measures_the_rate_the_rank_page_estimates_from(store, tmp_path, tiny_checkpoint,
                                                                     monkeypatch):
    from db import jobs, runs
    from scar_core.jobs.estimate import estimate
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score

    dataset = importing.import_file(store, pool(tmp_path, "pairs.jsonl", LENGTHS))
    model = str(tiny_checkpoint)
    assert estimate(store, dataset.id, model, "cpu", "fp32") is None
    history_in_fragment = record_history(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/rank.py").run()
    at.radio(key="ranker_kind").set_value("checkpoint folder").run()
    at.text_input(key="checkpoint_dir").set_value(model)
    at.selectbox(key="device").set_value("cpu").run()
    assert any(i.startswith("No rate measured for this ranker") for i in texts(at.info))

    sample = submit_score(store, dataset.id, model=model, device="cpu", precision="auto", sample=12, launch=False)
    job = run_job(store, sample.job_id)
    assert job.status == "done" and job.total == 12 and runs.count_done(store, sample.id) == 12
    guess = estimate(store, dataset.id, model, "cpu", "auto")
    assert guess.rows == 20 and guess.rate_runs == (sample.id,)
    timing = jobs.get_job(store, sample.job_id).params["timing"]  # measured once, kept with the job
    assert guess.seconds == pytest.approx(timing["startup_s"] + guess.tokens * timing["scoring_s"] / timing["tokens"])
    at.run()
    assert any(i.startswith("Scoring all 20 pairs: about ") and f"run {sample.id}" in i
               for i in texts(at.info)), texts(at.info)
    assert history_in_fragment == [True]  # the History table reruns with the progress bar, every second
    assert not at.exception and jobs.get_job(store, sample.job_id).params["sample_ids"] == sorted(
        jobs.get_job(store, sample.job_id).params["sample_ids"])


def test_the_progress_and_the_history_keep_their_names_as_a_run_ends(store, tmp_path, tiny_checkpoint,
                                                                      monkeypatch):
    """The line saying a run was started shows above the progress only while that run goes, and the ranker's
    settings draw an estimate only once a ranker is named: Cancel in the progress and Resume in the history
    keep their fragments' names through both."""
    from db import jobs
    from scar_core.jobs.score import submit_score

    dataset = importing.import_file(store, pool(tmp_path, "pairs.jsonl"))
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/rank.py").run()
    at.radio(key="ranker_kind").set_value("checkpoint folder").run()
    named = fragment_names(monkeypatch, "progress", "run_history")
    at.session_state["rank_said"] = (run.id, f"Started run {run.id}.")
    at.text_input(key="checkpoint_dir").set_value(str(tiny_checkpoint)).run()
    assert texts(at.success) == [f"Started run {run.id}."] and at.button(key=f"cancel_{run.job_id}")
    assert any(i.startswith("No rate measured for this ranker") for i in texts(at.info))
    jobs.finish(store, run.job_id, "cancelled")
    at.text_input(key="checkpoint_dir").set_value("").run()
    assert not at.success and not at.info and at.button(key="resume")
    assert not at.exception, at.exception
    assert all(len(n) >= 2 and len(set(n)) == 1 for n in named.values()), named


def test_the_lm_term_loads_in_the_loading_phase_not_in_the_first_chunk(store, tmp_path, tiny_lm, monkeypatch):
    from db import jobs
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score
    from scar_core.ranker import LMTerm, StyleRanker
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=5.0, std=1.0))
    ranker.save(tmp_path / "lm-ranker")
    dataset = importing.import_file(store, pool(tmp_path, "pairs.jsonl"))
    phases, loaded_during, report, load = [], [], jobs.report, StyleRanker.language_model

    def recorded(session, job_id, done, total, rate, message=None, eta_s=None):
        phases.append(message)
        return report(session, job_id, done, total, rate, message, eta_s=eta_s)

    def language_model(self, device, dtype):
        loaded_during.append(phases[-1])
        return load(self, device, dtype)

    monkeypatch.setattr(jobs, "report", recorded)
    monkeypatch.setattr(StyleRanker, "language_model", language_model)
    run = submit_score(store, dataset.id, model=str(tmp_path / "lm-ranker"), device="cpu", precision="fp32",
                       launch=False)
    assert run_job(store, run.job_id).status == "done"
    assert loaded_during[0] == "loading the ranker"  # the bar said "scoring" while the LM loaded


def test_durations_read_as_words():
    from scar_core.display import duration

    assert [duration(s) for s in (3, 45, 720, 12_600)] == ["a few seconds", "45 seconds", "12 minutes", "3.5 hours"]
