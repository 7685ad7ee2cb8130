"""The first hour in the app (issue 30): a landing page with where the store stands, progress at the top of
Rank and in the sidebar, estimates from a rate model with start-up, a Runs page, deep links, and a CLI
that reports progress off a terminal. AppTest against a fresh store and the tiny random ranker."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from db import jobs, runs
from db.models import Job
from scar_core.jobs import access, datasets as importing, estimate as estimates, overview
from scar_core.jobs.map import ensure_map, submit_map
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.conftest import chooser, score_file, style_pool
from tests.test_team import left_local  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def links(at: AppTest) -> list:
    return [e.proto for e in at.get("page_link")]


def flat(node) -> list:
    """Every element under a node, in the order the page shows them."""
    found = []
    for child in getattr(node, "children", {}).values():
        found.append(child)
        found += flat(child)
    return found


def test_the_landing_page_says_what_the_app_does_and_where_the_store_stands(store, small_pool, tiny_checkpoint):
    at = app()
    assert texts(at.header) == ["SCAR Studio"]
    assert len(at.markdown[0].value.split("\n")) == 3  # three lines say what it does
    steps = ["Datasets", "Rank", "Explore", "Select", "Export"]
    assert [p.label for p in links(at)][:5] == [f"{k}. {name}" for k, name in enumerate(steps, 1)]
    assert texts(at.caption)[:2] == ["no data set yet", "nothing scored yet"]

    run = score_file(store, small_pool, tiny_checkpoint)
    at = app()
    assert texts(at.caption)[:3] == ["1 data set (12 pairs)", "1 run, 1 finished", "1 finished run to explore, 0 labels given"]
    assert [s.stands for s in overview.steps(store)][1] == "1 run, 1 finished"
    assert run.status == "done"


def test_the_rank_page_shows_a_run_at_its_top_and_the_way_on_to_explore(store, small_pool, tiny_checkpoint):
    dataset = importing.import_file(store, small_pool)
    waiting = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                           launch=False)  # queued: what the page shows while a worker starts
    at = app("rank")
    shown = flat(at.main)
    bar = next(k for k, e in enumerate(shown) if e.type == "progress")
    ranker = next(k for k, e in enumerate(shown) if getattr(e, "key", None) == "ranker_kind")
    assert bar < ranker, "the progress sits above the ranker choice, not below the start button"
    assert f"Scoring run {waiting.id}: 0/12" in [p.proto.text for p in at.sidebar.get("progress")]

    assert run_job(store, waiting.job_id).status == "done"
    at.run()
    assert any(s.startswith(f"Run {waiting.id} finished: 12 pairs scored") for s in texts(at.success))
    explore = [p for p in links(at) if p.label == f"Open run {waiting.id} in Explore"]
    assert explore and explore[0].page == "explore" and explore[0].query_string == f"run={waiting.id}"
    assert not at.sidebar.get("progress")  # nothing under way: no status, no polling


def test_the_runs_page_lists_every_run_and_job(store, small_pool, tiny_checkpoint):
    run = score_file(store, small_pool, tiny_checkpoint)
    sample = submit_score(store, run.dataset_id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                          sample=5, launch=False)
    mapped = submit_map(store, run.id, launch=False)
    at = app("runs")
    table = at.dataframe[0].value
    assert table["what"].tolist() == [f"job {mapped.id}", f"run {sample.id}", f"run {run.id}"]
    assert table["state"].tolist() == ["queued", "queued", "done"]
    assert table["scope"].tolist()[1:] == ["sample of 5", "whole data set"]
    assert set(table["precision"].tolist()[1:]) == {"fp32"} and table["engine"].tolist()[1:] == [
        f"{run.engine} on this machine"] * 2
    assert set(table["started by"]) == {access.local_identity()}  # local mode: the user the app runs as
    assert not any("not recorded" in c for c in texts(at.caption))
    assert run_job(store, sample.job_id).status == "done"
    auto = ensure_map(store, sample.id, launch=False)  # a map made because a run finished: nobody's
    assert auto.params["started_by"] == f"automatically, when run {sample.id} finished"


def test_runs_and_jobs_record_who_started_them_in_team_mode(store, small_pool, tiny_checkpoint):
    run = score_file(store, small_pool, tiny_checkpoint)
    lead = "lead@example.org"
    access.set_role(store, lead, access.LEAD)
    access.enter_team_mode(store, access.Team(who=lambda: lead, first_admin="admin@example.org",
                                              data_folders=(tiny_checkpoint.parent,)))
    try:
        started = submit_score(store, run.dataset_id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                               sample=5, launch=False)
        mapped = submit_map(store, run.id, launch=False)
    finally:
        access.leave_team_mode()
    rows = {r["what"]: r["started by"] for r in overview.history(store)}
    assert rows[f"run {started.id}"] == lead and rows[f"job {mapped.id}"] == lead
    assert jobs.get_job(store, started.job_id).params["started_by"] == lead


def _backdate(store, job_id: int, seconds: float) -> None:
    """Make a finished job look as if it had run `seconds` from its submission (start-up included)."""
    def work(session) -> None:
        job = session.get(Job, job_id)
        job.created_at = job.finished_at - timedelta(seconds=seconds)
    store.transact(work)


def test_estimates_add_start_up_to_a_per_token_cost_fitted_on_every_run(store, tmp_path, tiny_checkpoint,
                                                                        monkeypatch):
    model = str(tiny_checkpoint)
    dataset = importing.import_file(store, style_pool(tmp_path, rows=40))
    small = submit_score(store, dataset.id, model=model, device="cpu", precision="fp32", sample=10, launch=False)
    run_job(store, small.job_id)
    big = submit_score(store, dataset.id, model=model, device="cpu", precision="fp32", sample=30, launch=False)
    run_job(store, big.job_id)
    # the worker start and ranker load: tens of seconds on every run, whatever its size (issue 30, found 3)
    walls = {small.job_id: 40.0, big.job_id: 50.0}
    for job_id, wall in walls.items():
        _backdate(store, job_id, wall)
    guess = estimates.estimate(store, dataset.id, model, "cpu", "fp32")
    timings = [estimates.run_timing(store, runs.get_run(store, r.id)) for r in (small, big)]
    assert set(guess.rate_runs) == {small.id, big.id}  # every run, not the latest
    for timing, wall in zip(timings, walls.values()):
        assert timing.startup_s + timing.scoring_s == pytest.approx(wall, abs=0.01)
    assert guess.startup_s == pytest.approx(sum(t.startup_s for t in timings) / 2)  # median of two
    assert guess.per_token_s == pytest.approx(sum(t.scoring_s for t in timings) / sum(t.tokens for t in timings))
    assert guess.tokens == sum(estimates.dataset_tokens(store, dataset.id, model).values())
    assert guess.seconds == pytest.approx(guess.startup_s + guess.tokens * guess.per_token_s)
    assert guess.low <= guess.seconds <= guess.high
    assert guess.seconds > min(walls.values()) - 1  # five rows never come out as "a few seconds"
    assert "start-up" in guess.how() and f"runs {small.id}, {big.id}" in guess.how()
    assert jobs.get_job(store, big.job_id).params["timing"]["tokens"] == timings[1].tokens  # stored with its job
    sample = estimates.estimate(store, dataset.id, model, "cpu", "fp32", rows=30)
    assert sample.rows == 30 and sample.seconds < guess.seconds and sample.startup_s == guess.startup_s
    assert sample.tokens == timings[1].tokens  # the very rows a new sample run of 30 draws
    monkeypatch.setenv("SCAR_ENGINE", "int8")  # where the app's "auto" means int8, torch runs say nothing
    assert estimates.estimate(store, dataset.id, model, "cpu", "fp32") is None


def test_cleaning_is_timed_apart_from_start_up_and_estimated_per_row(store, tmp_path, tiny_checkpoint):
    """Cleaning grows with the data set: counted as start-up it made every later estimate, cleaning or not,
    carry one data set's cleaning time. The worker times it; estimates add it per row only when asked."""
    model = str(tiny_checkpoint)
    dataset = importing.import_file(store, style_pool(tmp_path, rows=40))
    plain = submit_score(store, dataset.id, model=model, device="cpu", precision="fp32", sample=10, launch=False)
    run_job(store, plain.job_id)
    unknown = estimates.estimate(store, dataset.id, model, "cpu", "fp32", clean=True)
    assert np.isnan(unknown.cleaning_s) and "cleaning not yet measured on this machine (not counted)" in unknown.how()
    cleaned = submit_score(store, dataset.id, model=model, device="cpu", precision="fp32", sample=20,
                           clean={"dedup": "near", "lang": "any"}, launch=False)
    run_job(store, cleaned.job_id)
    params = jobs.get_job(store, cleaned.job_id).params
    assert params["clean_seconds"] > 0 and params["clean_rows"] == 40
    jobs.set_params(store, cleaned.job_id, clean_seconds=20.0)  # a slow clean: 0.5 s per row
    _backdate(store, plain.job_id, 30.0)
    _backdate(store, cleaned.job_id, 50.0)
    timing = estimates.run_timing(store, runs.get_run(store, cleaned.id))
    assert timing.cleaning_s == 20.0 and timing.cleaned_rows == 40
    assert timing.startup_s + timing.scoring_s + timing.cleaning_s == pytest.approx(50.0, abs=0.01)
    without = estimates.estimate(store, dataset.id, model, "cpu", "fp32")
    with_cleaning = estimates.estimate(store, dataset.id, model, "cpu", "fp32", clean=True)
    assert without.cleaning_s is None and "cleaning" not in without.how()
    assert with_cleaning.cleaning_s == pytest.approx(40 * 20.0 / 40)
    assert with_cleaning.seconds == pytest.approx(without.seconds + 20.0)
    assert "cleaning 20 s" in with_cleaning.how()
    assert jobs.get_job(store, plain.job_id).params.get("clean_seconds") is None  # no cleaning asked, none timed


def test_a_link_names_the_run_and_the_example_and_a_bookmark_opens_the_newest_finished_run(
        store, tmp_path, tiny_checkpoint):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = score_file(store, style_pool(tmp_path / "a"), tiny_checkpoint)
    second = score_file(store, style_pool(tmp_path / "b", rows=8, every=3), tiny_checkpoint)  # some rows new
    still = submit_score(store, first.dataset_id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                         sample=3, launch=False)  # the newest run, still scoring
    at = opened_at("explore")  # a bookmark naming no run
    assert chooser(at, "run").value == second.id != still.id
    assert at.query_params["run"] == str(second.id) and at.query_params["example"]

    ranked = runs.result_ids(store, first.id, None, sort="score_desc")
    example = ranked[5]
    at = opened_at("explore", run=str(first.id), example=str(example))  # a link a colleague shared
    assert chooser(at, "run").value == first.id
    assert "Example at rank 6" in texts(at.subheader) and at.query_params["example"] == str(example)
    at.button(key="next").click().run()
    assert "Example at rank 7" in texts(at.subheader)
    assert at.query_params["example"] == str(ranked[6])  # the URL follows the open example


def opened_at(page: str, **query) -> AppTest:
    """The app as a browser opening /PAGE?QUERY on a fresh server."""
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_the_cli_prints_progress_lines_off_a_terminal_and_scores_to_four_decimals(tmp_path, small_pool,
                                                                                  tiny_checkpoint):
    out = tmp_path / "top.jsonl"
    command = [sys.executable, "-m", "scar_core", "rank", str(small_pool), "--out", str(out), "--ratio", "0.5",
               "--model", str(tiny_checkpoint), "--device", "cpu", "--precision", "fp32", "--with-scores"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("scoring: ")]
    assert lines and lines[-1].startswith("scoring: 12/12 pairs, ") and "left" in lines[-1]
    kept = re.search(r"lowest kept score (-?\d+\.\d+)\)", done.stderr)
    assert kept and len(kept.group(1).split(".")[1]) == 4
    written = [json.loads(line)["score"] for line in out.read_text().splitlines()]
    assert any(len(repr(score).split(".")[1]) > 4 for score in written)  # the file keeps every digit
    quiet = subprocess.run(command + ["--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert quiet.returncode == 0 and not [line for line in quiet.stderr.splitlines() if line.startswith("scoring")]


def test_off_a_terminal_progress_is_a_line_every_ten_seconds_and_one_at_the_end(monkeypatch, capsys):
    from scar_core.cli import common

    clock = iter(range(0, 1000, 3))  # each update comes 3 s after the last
    monkeypatch.setattr(common.time, "monotonic", lambda: next(clock))
    with common.progress(12, "scoring", "pair") as shown:
        for _ in range(12):
            shown.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["scoring: 4/12 pairs", "scoring: 8/12 pairs",
                                                      "scoring: 12/12 pairs"]  # at 12 s, 24 s, then the end
    assert all(" left" in line for line in lines)


def test_a_role_without_a_steps_page_sees_the_step_unlinked(store, tmp_path, monkeypatch, left_local):  # noqa: F811
    from pages import team_mode
    from scar_core.jobs import access
    from tests.test_team import ADMIN, LEAD, team_app

    access.enter_team_mode(store, access.Team(who=lambda: ADMIN, first_admin=ADMIN))
    access.set_role.__wrapped__(store, LEAD, access.LEAD)
    monkeypatch.setitem(team_mode.PAGE_NEEDS, "Export", "assign")  # a lead without the Export page
    at = team_app(tmp_path, {"is_logged_in": True, "email": LEAD}).run()
    assert not at.exception and not at.error
    assert [p.label for p in links(at)][:4] == ["1. Datasets", "2. Rank", "3. Explore", "4. Select"]
    assert "5. Export" in [m.value for m in at.markdown] and "5. Export" not in [p.label for p in links(at)]
