"""Background scoring jobs with real worker processes: kill -9 and resume, cancel, cache hits,
and several processes writing one SQLite file at once."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sqlalchemy import select

from db import datasets, jobs, labels, open_store, runs, selections
from scar_core.jobs import datasets as importing
from scar_core.load import load
from scar_core.jobs import runner as workers
from scar_core.jobs.score import submit_score

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pairs_file(tmp_path) -> Path:
    rng = random.Random(7)
    path = tmp_path / "pairs.jsonl"
    with path.open("w") as f:
        for i in range(80):
            words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(rng.randint(1, 40)))
            f.write(json.dumps({"instruction": f"Task {i}: explain {words[:30]}", "output": words}) + "\n")
    return path


def start(store, job_id: int) -> subprocess.Popen:
    """A worker process we own (so the test can kill and reap it)."""
    return subprocess.Popen([sys.executable, "-m", "scar_core", "worker", str(job_id), "--db", store.url],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def integrity_ok(store) -> bool:
    with store.engine.connect() as c:
        return c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_worker_killed_mid_run_resumes_without_duplicates(tmp_path, pairs_file, tiny_checkpoint, ranker):
    store = open_store(str(tmp_path / "kill.db"))
    ds = importing.import_file(store, pairs_file)
    run = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       chunk_rows=2, launch=False)
    total = ds.example_count
    kill_points = sorted(random.Random(2024).sample(range(4, total - 8), 5))
    seen = []
    for point in kill_points:
        worker = start(store, run.job_id)
        # Kill only after this worker has claimed the job and stored rows of its own: a kill point the
        # previous worker already overshot must not kill the new one before it starts.
        target = max(point, seen[-1] + 1 if seen else 0)
        wait_for(lambda: runs.count_done(store, run.id) >= target or worker.poll() is not None)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        done = runs.count_done(store, run.id)
        assert done < total, "the worker finished before it could be killed"
        seen.append(done)
        assert jobs.mark_stale(store) == [run.job_id]
        assert workers.resume(store, run.job_id, launch=False).status == "queued"
    assert all(a < b for a, b in zip(seen, seen[1:])) and seen[0] >= kill_points[0]
    job = workers.run_job(store, run.job_id)  # the last resume runs in this process
    assert (job.status, job.done, job.total) == ("done", total, total)
    assert job.result["scored"] == total - seen[-1]  # the last worker scored only the missing rows
    assert runs.get_run(store, run.id).status == "done"
    ids, scores = runs.run_scores(store, run.id)
    assert len(ids) == len(set(ids.tolist())) == total
    # Same scores as scoring everything at once in memory.
    from scar_core.score import score_examples

    expected = score_examples(ranker, [datasets.to_core(e) for e in datasets.examples(store, ds.id, limit=total)],
                              device="cpu", precision="fp32")
    np.testing.assert_allclose(scores, expected.score, rtol=1e-4, atol=1e-5)
    _, v_lf = runs.run_vectors(store, run.id, "lf")
    np.testing.assert_allclose(v_lf, expected.v_lf, rtol=2e-3, atol=2e-3)  # stored as float16
    assert integrity_ok(store)


def test_cancel_stops_the_worker_and_keeps_finished_rows(tmp_path, pairs_file, tiny_checkpoint):
    store = open_store(str(tmp_path / "cancel.db"))
    ds = importing.import_file(store, pairs_file)
    run = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       chunk_rows=1, launch=False)
    worker = start(store, run.job_id)
    wait_for(lambda: runs.count_done(store, run.id) >= 5)
    asked = time.monotonic()
    workers.cancel(store, run.job_id)
    assert worker.wait(timeout=30) == 0
    assert time.monotonic() - asked < 15
    job = jobs.get_job(store, run.job_id)
    assert job.status == "cancelled" and runs.get_run(store, run.id).status == "cancelled"
    kept = runs.count_done(store, run.id)
    assert 5 <= kept < ds.example_count and job.done == kept
    # Resuming a cancelled run finishes it from where it stopped.
    workers.resume(store, run.job_id, launch=False)
    finished = workers.run_job(store, run.job_id)
    assert finished.status == "done" and finished.result["scored"] == ds.example_count - kept
    assert runs.count_done(store, run.id) == ds.example_count


def test_unchanged_dataset_and_ranker_are_answered_from_the_store(tmp_path, pairs_file, tiny_checkpoint,
                                                                    monkeypatch):
    store = open_store(str(tmp_path / "cache.db"))
    ds = importing.import_file(store, pairs_file)
    first = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    assert workers.run_job(store, first.job_id).status == "done"

    def no_model(*_args, **_kwargs):
        raise AssertionError("a cached run must not load a model or start a worker")

    monkeypatch.setattr("scar_core.jobs.score.start_worker", no_model)  # the names the scoring job calls
    monkeypatch.setattr("scar_core.jobs.score.load_ranker", no_model)
    started = time.perf_counter()
    again = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="fp32")
    elapsed = time.perf_counter() - started
    assert again.status == "done" and again.id != first.id
    job = jobs.get_job(store, again.job_id)
    assert job.result == {"scored": 0, "from_cache": ds.example_count} and job.done == ds.example_count
    assert np.array_equal(runs.run_scores(store, again.id)[1], runs.run_scores(store, first.id)[1])
    print(f"cache hit for {ds.example_count} rows answered in {elapsed:.3f} s")


def test_a_second_start_joins_the_active_run_of_the_same_kind(tmp_path, pairs_file, tiny_checkpoint):
    """A double click on Start (or two servers) gives one run; another precision or sample is a run of its own."""
    from scar_core.jobs.score import start_score

    store = open_store(str(tmp_path / "join.db"))
    ds = importing.import_file(store, pairs_file)
    common = dict(model=str(tiny_checkpoint), device="cpu", launch=False)
    first, joined = start_score(store, ds.id, precision="fp32", **common)
    assert not joined and first.status == "queued"
    again, joined = start_score(store, ds.id, precision="fp32", **common)
    assert joined and (again.id, again.job_id) == (first.id, first.job_id)
    assert submit_score(store, ds.id, precision="fp32", **common).id == first.id
    other, joined = start_score(store, ds.id, precision="bf16", **common)
    sample, sample_joined = start_score(store, ds.id, precision="fp32", sample=10, **common)
    assert not joined and not sample_joined and len({first.id, other.id, sample.id}) == 3
    same_sample, joined = start_score(store, ds.id, precision="fp32", sample=10, **common)
    assert joined and same_sample.id == sample.id
    assert len(runs.list_runs(store, ds.id)) == 3
    assert workers.run_job(store, first.job_id).status == "done"
    later, joined = start_score(store, ds.id, precision="fp32", **common)  # the first is done: not joined
    assert not joined and later.id != first.id and later.status == "done"  # answered from the store


APP_SESSION = """
import sys, time
from db import open_store, runs, selections
from scar_core.jobs import labelling
store = open_store(sys.argv[1])
run_id, name, until = int(sys.argv[2]), sys.argv[3], time.time() + float(sys.argv[4])
ids = runs.run_scores(store, run_id)[0].tolist()
n = 0
while time.time() < until or n < 20:
    example = ids[n % len(ids)]
    labelling.label(store, run_id, [example], ("keep", "drop", "flag")[n % 3], name, note=f"pass {n}")
    selections.save_selection(store, run_id, f"{name}-{n % 4}", "topk", {"topk": n}, ids[: n % 50], replace=True)
    runs.results_page(store, run_id, runs.ResultFilter(search="alpha"), limit=20)
    n += 1
print(n)
"""


def test_two_app_sessions_and_a_cli_job_share_one_sqlite_file(tmp_path, pairs_file, tiny_checkpoint):
    db_path = tmp_path / "shared.db"
    store = open_store(str(db_path))
    ds = importing.import_file(store, pairs_file)
    seed = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="bf16", launch=False)
    assert workers.run_job(store, seed.job_id).status == "done"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sessions = [subprocess.Popen([sys.executable, "-c", APP_SESSION, str(db_path), str(seed.id), name, "8"],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for name in ("ana", "ben")]
    out = tmp_path / "scores.jsonl"
    cli = subprocess.run([sys.executable, "-m", "scar_core", "score", str(pairs_file), "--out", str(out),
                          "--db", str(db_path), "--model", str(tiny_checkpoint), "--device", "cpu",
                          "--precision", "fp32"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    passes = {}
    for name, p in zip(("ana", "ben"), sessions):
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
        assert int(stdout) >= 20
        assert b"locked" not in stderr
        passes[name] = int(stdout)
    # no write was lost: one label event per pass (each note is new) and one selection version per save
    assert labels.count_events(store) == sum(passes.values())
    versions = selections.list_selections(store, seed.id, versions=True)
    for name, n in passes.items():
        assert len([s for s in versions if s.name.startswith(f"{name}-")]) == n
        assert sorted(s.version for s in versions if s.name == f"{name}-0") == list(range(1, len(range(0, n, 4)) + 1))
    assert len(selections.list_selections(store, seed.id)) == 8  # the latest version of each name
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == ds.example_count and lines[0]["where"] == "line 1"
    fp32 = [r for r in runs.list_runs(store, ds.id) if r.precision == "fp32"]
    assert len(fp32) == 1 and fp32[0].status == "done"
    np.testing.assert_allclose([line["score"] for line in lines], runs.run_scores(store, fp32[0].id)[1])
    assert integrity_ok(store)


def test_cli_score_with_db_matches_in_memory_scoring_and_reuses_the_store(tmp_path, pairs_file, tiny_checkpoint):
    from scar_core.cli import main

    db_path = tmp_path / "cli.db"
    common = ["--model", str(tiny_checkpoint), "--device", "cpu", "--precision", "fp32"]
    assert main(["score", str(pairs_file), "--out", str(tmp_path / "mem.jsonl"), *common]) == 0
    assert main(["score", str(pairs_file), "--out", str(tmp_path / "db.jsonl"), "--db", str(db_path), *common]) == 0
    assert main(["score", str(pairs_file), "--out", str(tmp_path / "again.jsonl"), "--db", str(db_path), *common]) == 0
    mem, stored, again = ([json.loads(x) for x in (tmp_path / n).read_text().splitlines()]
                          for n in ("mem.jsonl", "db.jsonl", "again.jsonl"))
    assert [r["id"] for r in mem] == [r["id"] for r in stored] and stored == again
    assert set(stored[0]) == set(mem[0])  # the same diagnostics and flags as in-memory scoring
    np.testing.assert_allclose([r["score"] for r in stored], [r["score"] for r in mem], rtol=1e-4, atol=1e-5)
    store = open_store(str(db_path))
    second = jobs.get_job(store, runs.list_runs(store)[0].job_id)
    assert second.result == {"scored": 0, "from_cache": len(mem)}
    assert len(datasets.list_datasets(store)) == 1


def test_finished_run_stores_breakdown_outliers_and_form_features(tmp_path, pairs_file, tiny_checkpoint):
    from db.models import Result
    from scar_core.diagnostics.breakdown import breakdown
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score
    from scar_core.ranker import load_ranker

    store = open_store(str(tmp_path / "diag.db"))
    dataset = importing.import_loaded(store, load(pairs_file), {})
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    assert run_job(store, run.job_id).status == "done"
    with store.read() as s:
        rows = s.execute(select(Result.lf_contribution, Result.is_contribution, Result.diagnostics)
                         .where(Result.run_id == run.id).order_by(Result.example_id)).all()
    data = runs.run_results(store, run.id)
    expected = breakdown(load_ranker(str(tiny_checkpoint)), data["v_is"], data["v_lf"], head_score=data["score"])
    np.testing.assert_allclose([r[0] for r in rows], expected.lf_contribution, atol=1e-6)
    np.testing.assert_allclose([r[0] + r[1] + r[2]["baseline"] for r in rows], data["score"], atol=1e-5)
    assert all(r[2]["words"] >= 1 and r[2]["lf_outlier"] > 0 and "markdown_density" in r[2] for r in rows)


def test_worker_that_exits_before_claiming_shows_as_interrupted(tmp_path, pairs_file, tiny_checkpoint):
    store = open_store(str(tmp_path / "early.db"))
    ds = importing.import_file(store, pairs_file)
    run = submit_score(store, ds.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", launch=False)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        jobs.record_launch(store, run.job_id, alive.pid)
        assert jobs.mark_stale(store) == [] and jobs.get_job(store, run.job_id).status == "queued"
    finally:
        alive.kill()
        alive.wait()
    # The launched process is gone and never claimed the job: interrupted, and resumable.
    assert jobs.mark_stale(store) == [run.job_id]
    job = jobs.get_job(store, run.job_id)
    assert job.status == "interrupted" and "stopped without finishing" in job.error
    assert workers.resume(store, run.job_id, launch=False).status == "queued"
    assert jobs.mark_stale(store) == []  # no launch recorded since the resume: nothing to judge
    assert workers.run_job(store, run.job_id).status == "done"


def test_run_with_an_lm_term_stores_each_responses_nll(tmp_path, pairs_file, tiny_lm):
    from db.models import Result
    from scar_core.lm import load_language_model, response_nll
    from scar_core.jobs.runner import run_job
    from scar_core.ranker import LMTerm, load_ranker
    from scar_core.score import score_examples
    from tests.conftest import tiny_ranker

    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=2.0))
    ranker.lm_weight.data.fill_(0.5)
    ranker.save(tmp_path / "lm-ranker")
    store = open_store(str(tmp_path / "lm.db"))
    data = load(pairs_file)
    dataset = importing.import_loaded(store, data, {})
    run = submit_score(store, dataset.id, model=str(tmp_path / "lm-ranker"), device="cpu", precision="fp32",
                       launch=False)
    assert run_job(store, run.job_id).status == "done"
    stored = runs.run_results(store, run.id)
    examples = data.examples
    nll = response_nll(load_language_model(str(tiny_lm), "cpu", "fp32"), [e.instruction for e in examples],
                       [e.response for e in examples], max_tokens=256, copy_span=4, min_tokens=4, count_end=True)
    with store.read() as s:
        diag = {e: (d, lf, is_) for e, d, lf, is_ in s.execute(
            select(Result.example_id, Result.diagnostics, Result.lf_contribution, Result.is_contribution)
            .where(Result.run_id == run.id)).all()}
    got = [diag[e][0]["lm_nll"] for e in stored["example_id"].tolist()]
    np.testing.assert_allclose([np.nan if v is None else v for v in got], nll, rtol=1e-5)  # None: pasted whole
    # The term's share of each score, -0.5 * (nll - 3) / 2 (0 where nothing counted), and with it the
    # breakdown is complete: score = one shared baseline + form part + surprisal part + LM term part.
    lm_part = np.array([diag[e][0]["lm_contribution"] for e in stored["example_id"].tolist()])
    np.testing.assert_allclose(lm_part, np.nan_to_num(-0.5 * (nll - 3.0) / 2.0), rtol=1e-5, atol=1e-6)
    baseline = stored["score"] - np.array([diag[e][1] + diag[e][2] for e in stored["example_id"].tolist()]) - lm_part
    assert np.ptp(baseline) < 2e-3 < 0.1 * np.ptp(lm_part), (np.ptp(baseline), np.ptp(lm_part))  # vectors kept in fp16
    direct = score_examples(load_ranker(tmp_path / "lm-ranker"), examples, device="cpu", precision="fp32")
    np.testing.assert_allclose(stored["score"], direct.score, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(direct.lm_nll, nll, rtol=1e-5)


def test_a_rankers_lm_term_settings_are_part_of_its_identity(tmp_path, pairs_file, tiny_lm):
    """Two checkpoints with the same weights but different LM term settings (config.json) score
    differently, so the store keeps their scores apart; an identical copy shares them."""
    import shutil

    from db import rankers
    from db.models import Result
    from scar_core.errors import ScarError
    from scar_core.export import file_sha256
    from scar_core.jobs.rankers import describe
    from scar_core.ranker import WEIGHTS, LMTerm, checkpoint_hashes, load_ranker
    from tests.conftest import tiny_ranker

    plain = tiny_ranker().save(tmp_path / "plain")
    assert checkpoint_hashes(plain)[1] == file_sha256(plain / WEIGHTS)  # as stores have it already
    ranker = tiny_ranker()
    ranker.add_lm_term(LMTerm(str(tiny_lm), mean=3.0, std=2.0))
    ranker.lm_weight.data.fill_(0.5)
    first = ranker.save(tmp_path / "min4")
    identity = checkpoint_hashes(first)[1]
    assert identity == load_ranker(first).identity != file_sha256(first / WEIGHTS)

    copy, edited = (Path(shutil.copytree(first, tmp_path / name)) for name in ("copy", "min1"))
    config = json.loads((edited / "config.json").read_text())
    config["lm_term"]["min_tokens"] = 1
    (edited / "config.json").write_text(json.dumps(config))
    assert checkpoint_hashes(copy)[1] == identity != checkpoint_hashes(edited)[1]
    # A term saved before copy_span/min_tokens/count_end existed is the same as one saving them as null/false.
    for name, term in (("old", {"lm": str(tiny_lm), "max_tokens": 256, "mean": 3.0, "std": 2.0}),
                       ("nulls", {"lm": str(tiny_lm), "max_tokens": 256, "copy_span": None, "min_tokens": None,
                                  "count_end": False, "mean": 3.0, "std": 2.0})):
        folder = Path(shutil.copytree(first, tmp_path / name))
        (folder / "config.json").write_text(json.dumps({**config, "lm_term": term}))
    assert checkpoint_hashes(tmp_path / "old")[1] == checkpoint_hashes(tmp_path / "nulls")[1]
    (tmp_path / "old" / "config.json").write_text(json.dumps({**config, "lm_term": {"lm": "x", "span": 4}}))
    with pytest.raises(ScarError, match=r"old/config.json: invalid lm_term"):
        checkpoint_hashes(tmp_path / "old")

    store = open_store(str(tmp_path / "identity.db"))
    dataset = importing.import_loaded(store, load(pairs_file), {})
    done = {}
    for folder in (first, copy, edited):
        run = submit_score(store, dataset.id, model=str(folder), device="cpu", precision="fp32", launch=False)
        if jobs.get_job(store, run.job_id).status == "queued":  # else answered from the store at once
            assert workers.run_job(store, run.job_id).status == "done"
        with store.read() as s:
            nll = [d["lm_nll"] for d in s.scalars(select(Result.diagnostics).where(Result.run_id == run.id))]
        done[folder.name] = (runs.get_run(store, run.id).ranker_id, jobs.get_job(store, run.job_id).result, nll)
    assert done["copy"][0] == done["min4"][0] and done["copy"][1]["from_cache"] == 80
    assert done["min1"][0] != done["min4"][0] and done["min1"][1]["from_cache"] == 0
    # min_tokens 1 measures the short answers that min_tokens 4 counted as average.
    assert sum(v is None for v in done["min1"][2]) < sum(v is None for v in done["min4"][2])

    # A run whose checkpoint's settings change before it is scored refuses to mix the two.
    later = Path(shutil.copytree(first, tmp_path / "later"))
    config["lm_term"]["min_tokens"] = 3
    (later / "config.json").write_text(json.dumps(config))
    run = submit_score(store, dataset.id, model=str(later), device="cpu", precision="fp32", launch=False)
    config["lm_term"]["min_tokens"] = 2
    (later / "config.json").write_text(json.dumps(config))
    job = workers.run_job(store, run.job_id)
    assert job.status == "failed" and "changed since run" in job.error
    # Manifests record the plain weights file hash, while the folder still holds what was registered.
    assert describe(rankers.get_ranker(store, done["min4"][0]))["weights_sha256"] == file_sha256(first / WEIGHTS)
    assert describe(rankers.get_ranker(store, run.ranker_id))["weights_sha256"] is None  # "later", since edited
