"""The Ray engine on a real two-node Ray cluster on loopback (a head and a worker node started with
`ray start`, token authentication on, session files in a temporary folder), with the tiny random
ranker: the same scores as the local engine whatever the workers and block size, an actor killed
mid-run, the Rank page starting a Ray run, cancelling it and resuming it (the store on PostgreSQL where the
suite has one), an unreachable address.
The cluster starts once for the module and every process of it is stopped at the end."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from streamlit.testing.v1 import AppTest

from db import jobs, open_store, runs
from scar_core.cli import main
from scar_core.errors import ScarError
from scar_core.export import write_parquet_shards
from scar_core.jobs import datasets as importing, runner as background
from scar_core.jobs.ray import RayCluster, failure_reason, iter_ray_scores
from scar_core.load import load
from scar_core.ranker import load_ranker
from scar_core.score import score_examples
from tests.conftest import style_pool

ROOT = Path(__file__).resolve().parent.parent
RAY = Path(sys.executable).with_name("ray")
ACTOR_TITLE = "ray::MapWorker(MapBatches(RankerActor"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_processes(sessions: set[int]) -> list[int]:
    """Ids of the live processes in these sessions (each `ray start` runs in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in sessions and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` and one more node, 1 CPU each, on 127.0.0.1; yields (address, session ids)."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in auth}
    os.environ.update(auth)  # for drivers in this process and the app's worker processes
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(200 * 2**20),
              "--disable-usage-stats"]
    nodes = [[str(RAY), "start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false",
              "--dashboard-port", str(free_port()), *common],
             [str(RAY), "start", "--address", f"127.0.0.1:{port}", *common]]
    sessions = set()
    try:
        for command in nodes:
            command += ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())]
            node = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            sessions.add(node.pid)
            output = node.communicate(timeout=120)[0]
            assert node.returncode == 0, output
        yield f"127.0.0.1:{port}", sessions
    finally:
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            for pid in session_processes(sessions):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while session_processes(sessions) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert not session_processes(sessions), "Ray processes were left behind"
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """Two styles in 60 rows, many of them near duplicates of rows in other blocks."""
    return style_pool(tmp_path_factory.mktemp("ray_pool"), rows=60, every=3)


def wait_for(predicate, timeout_s: float = 120.0, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every_s)


def score_lines(args: list[str], capsys) -> list[dict]:
    out = Path(args[args.index("--out") + 1])
    assert main(["score", *args]) == 0, capsys.readouterr().err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_ray_scores_equal_the_local_engine_row_by_row(cluster, pool, tiny_checkpoint, tmp_path,
                                                                     capsys):
    address, _ = cluster
    base = [str(pool), "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu"]
    local = score_lines([*base, "--out", str(tmp_path / "local.jsonl")], capsys)
    assert any(row["flags"] for row in local)  # near duplicates across blocks are flagged
    shards = tmp_path / "ray_shards"  # the same records as Parquet shards
    assert main(["score", *base, "--out", str(shards), "--out-format", "parquet", "--engine", "ray",
                 "--address", address, "--workers", "1", "--block-rows", "7"]) == 0, capsys.readouterr().err
    on_ray = [{**row, "flags": json.loads(row["flags"])}
              for row in pq.read_table(shards / "part-00000.parquet").to_pylist()]
    assert [r["id"] for r in on_ray] == [r["id"] for r in local]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(on_ray, local)) <= 1e-5
    assert [r["flags"] for r in on_ray] == [r["flags"] for r in local]
    for a, b in zip(on_ray, local):
        assert a.keys() == b.keys()
        assert a["lf_contribution"] == pytest.approx(b["lf_contribution"], abs=1e-4)
        assert a["words"] == b["words"]


def test_an_actor_killed_mid_run_is_replaced_and_every_row_comes_once(cluster, pool, tiny_checkpoint):
    """Two workers, blocks of 3 rows: also the local engine's scores with another pool size and block size."""
    address, sessions = cluster
    examples = load(pool).examples
    killed = []

    def kill_one_actor(done: int, _total: int, _rate: float) -> None:
        if not killed:
            actors = [pid for pid in session_processes(sessions) if cmdline(pid).startswith(ACTOR_TITLE)]
            assert actors, "no scoring actor found to kill"
            os.kill(actors[0], signal.SIGKILL)
            killed.append((actors[0], done))

    parts = list(iter_ray_scores(str(tiny_checkpoint), [e.ranker_instruction() for e in examples],
                                 [e.response for e in examples], cluster=RayCluster(address, 2, 3),
                                 device="cpu", precision="fp32", progress=kill_one_actor))
    assert killed and killed[0][1] < len(examples)
    index = np.concatenate([p.index for p in parts])
    assert sorted(index.tolist()) == list(range(len(examples)))  # every row, each exactly once
    expected = score_examples(load_ranker(str(tiny_checkpoint)), examples, device="cpu", precision="fp32").score
    assert np.abs(np.concatenate([p.score for p in parts]) - expected[index]).max() <= 1e-5


@pytest.fixture
def team_store_url(tmp_path):
    """A fresh database on the test PostgreSQL server where there is one (CI), else a SQLite file."""
    server = os.environ.get("SCAR_TEST_POSTGRES_URL")
    if not server:
        yield f"sqlite:///{tmp_path / 'studio.db'}"
        return
    name = f"scar_ray_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))  # a generated identifier, never user input
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_rank_page_scores_on_ray_cancel_stops_the_job_and_a_rerun_scores_only_the_rest(
        cluster, tiny_checkpoint, tmp_path, monkeypatch, team_store_url):
    address, sessions = cluster
    url = team_store_url
    monkeypatch.setenv("SCAR_DB_URL", url)
    monkeypatch.setenv("SCAR_RAY_ADDRESS", address)
    store = open_store(url)
    pool = style_pool(tmp_path, rows=640, every=5)  # ten blocks of 64 rows for one actor
    dataset = importing.import_file(store, pool)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/rank.py").run()
    at.radio(key="ranker_kind").set_value("checkpoint folder").run()
    at.text_input(key="checkpoint_dir").set_value(str(tiny_checkpoint))
    at.selectbox(key="device").set_value("cpu")
    at.checkbox(key="do_clean").uncheck()
    at.radio(key="engine").set_value("Ray cluster").run()
    assert at.text_input(key="ray_address").value == address
    at.number_input(key="ray_workers").set_value(1)
    at.button(key="start").click().run()
    assert not at.exception, at.exception
    run = runs.list_runs(store)[0]
    assert run.device == "ray:cpu" and run.params["engine"] == RayCluster(address, 1).params()
    wait_for(lambda: jobs.get_job(store, run.job_id).message == "starting the Ray actors")
    at.run()
    assert any("starting the Ray actors" in p.proto.text for p in at.get("progress"))
    assert at.button(key=f"cancel_{run.job_id}")  # the page's Cancel calls runner.cancel, as below
    wait_for(lambda: runs.count_done(store, run.id) > 0, every_s=0.02)
    background.cancel(store, run.job_id)  # at once, so the worker sees it at its next chunk
    wait_for(lambda: jobs.get_job(store, run.job_id).status == "cancelled")
    wait_for(lambda: not [p for p in session_processes(sessions) if cmdline(p).startswith(ACTOR_TITLE)])
    first = runs.count_done(store, run.id)
    assert 0 < first < dataset.example_count

    at.run()
    at.selectbox(key="resume_pick").set_value(run.id)
    at.button(key="resume").click().run()  # a new worker process, as on the page
    wait_for(lambda: jobs.get_job(store, run.job_id).status not in ("queued", "running"))
    job = jobs.get_job(store, run.job_id)
    assert job.status == "done", job.error
    assert job.result["scored"] == dataset.example_count - first  # the rerun scored only the missing rows
    stored = runs.run_results(store, run.id)
    assert len(set(stored["example_id"].tolist())) == len(stored["example_id"]) == dataset.example_count
    expected = score_examples(load_ranker(str(tiny_checkpoint)), load(pool).examples, device="cpu",
                              precision="fp32").score
    assert np.abs(stored["score"] - expected).max() <= 1e-5
    assert runs.count_without_breakdown(store, run.id) == 0


def test_an_unreachable_cluster_gives_one_paragraph_naming_the_address(pool, tmp_path, capsys):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    code = main(["score", str(pool), "--out", str(tmp_path / "x.jsonl"), "--engine", "ray", "--address", address])
    err = capsys.readouterr().err
    assert code == 2
    assert f"could not reach a Ray cluster at {address}" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_engine_options_are_refused_before_any_work(pool, tmp_path, capsys):
    out = str(tmp_path / "x.jsonl")
    assert main(["score", str(pool), "--out", out, "--workers", "2"]) == 2
    assert "--workers and --block-rows apply only with --engine ray" in capsys.readouterr().err
    assert main(["score", str(pool), "--out", out, "--engine", "ray", "--block-rows", "0"]) == 2
    assert "--block-rows must be at least 1, got 0" in capsys.readouterr().err


def test_parquet_shards_keep_the_order_and_refuse_a_folder_of_other_files(tmp_path):
    write_parquet_shards(tmp_path / "shards", ({"row": i, "flags": [i]} for i in range(20)), shard_rows=7)
    parts = sorted((tmp_path / "shards").iterdir())
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rows = [r for p in parts for r in pq.read_table(p).to_pylist()]
    assert rows == [{"row": i, "flags": json.dumps([i])} for i in range(20)]
    (tmp_path / "shards" / "notes.txt").write_text("mine")
    with pytest.raises(ScarError, match="is not a folder of Parquet shards"):
        write_parquet_shards(tmp_path / "shards", [{"row": 0}])


def test_an_actors_own_error_is_the_message():
    # Ray's errors carry the actor's traceback as text (a plain exception stands in: importing ray here,
    # before the cluster fixture sets RAY_AUTH_TOKEN, would fix the token this process sends)
    raised = Exception("The actor died because of an error raised in its creation task, \x1b[36mray::MapWorker"
                      "(MapBatches(RankerActor)).__init__()\x1b[39m (pid=1)\nTraceback (most recent call last):\n"
                      "scar_core.errors.ScarError: /models/mine: not a ranker checkpoint (no config.json)")
    assert failure_reason(raised) == "/models/mine: not a ranker checkpoint (no config.json)"
    assert failure_reason(Exception("\x1b[36mray::Task\x1b[39m lost\nmore")) == "ray::Task lost"
