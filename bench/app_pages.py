"""How fast the Explore and Select pages answer at 100k examples (server side, through AppTest).

    python bench/app_pages.py [--rows 100000]

Builds a fresh SQLite store with one dataset of --rows pairs, a finished run with random scores and
384-d vectors, stored map layouts for both spaces and a few hundred labels, then times each page's
first load (cold caches) and the interactions a user makes: moving the ratio slider, a text search,
a score-range filter, a map selection of 5,000 points, turning the page. Also prints the bytes of
plot data each page sends to the browser. Browser rendering time is not included.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.synthetic_store import fill_run, import_pairs, new_run  # noqa: E402
from db import maps, open_store, runs  # noqa: E402
from scar_core.jobs import labelling  # noqa: E402
from db.jobs import create_job, finish  # noqa: E402


def build(folder: Path, rows: int) -> str:
    """A store with one scored dataset, its maps and some labels; returns its URL."""
    url = f"sqlite:///{folder / 'bench.db'}"
    store = open_store(url)
    rng = np.random.default_rng(0)
    dataset = import_pairs(store, folder, rows, rng)
    job = create_job(store, "score")
    run = new_run(store, dataset, job_id=job.id, location=str(folder))
    ids = fill_run(store, run, rng, commit_rows=2000)
    finish(store, job.id, "done")
    map_job = create_job(store, "map", {"run_id": run.id})
    for space in ("lf", "is"):
        maps.save_map(store, run.id, space, ids, rng.standard_normal((len(ids), 2)))
    finish(store, map_job.id, "done", result={"rows": len(ids), "method": "umap"})
    picked = rng.choice(ids, size=300, replace=False).tolist()
    for k, verdict in enumerate(["keep", "drop", "flag"]):  # one bulk action per verdict
        labelling.label(store, run.id, [i for i in picked if i % 3 == k], verdict, "bench")
    # a second annotator disagrees on a third of them: conflicts for the label filter and its queue
    for k, verdict in enumerate(["drop", "flag", "keep"]):
        labelling.label(store, run.id, [i for i in picked[::3] if i % 3 == k], verdict, "bench2")
    return url


def timed(what: str, work) -> float:
    start = time.perf_counter()
    at = work()
    seconds = time.perf_counter() - start
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    charts = at.get("plotly_chart")
    sent = sum(len(c.proto.spec) for c in charts)
    print(f"{what:<52} {seconds:7.2f} s   plot data {sent / 1e3:8.0f} kB in {len(charts)} charts")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scar-app-bench-"))
    start = time.perf_counter()
    os.environ["SCAR_DB_URL"] = build(folder, args.rows)
    print(f"built a store of {args.rows} scored rows in {time.perf_counter() - start:.0f} s ({folder})")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    timed("Select: first load (cold cache)", lambda: at.switch_page("pages/select.py").run())
    timed("Select: move the ratio slider", lambda: at.slider(key="ratio").set_value(0.1).run())
    timed("Select: move it again", lambda: at.slider(key="ratio").set_value(0.25).run())
    timed("Select: per-source quotas on", lambda: at.checkbox(key="use_quotas").check().run())
    timed("Explore: first load (cold cache)", lambda: at.switch_page("pages/explore.py").run())
    timed("Explore: rerun (warm cache)", lambda: at.run())
    timed("Explore: text search", lambda: at.text_input(key="search").set_value("colour fox").run())
    timed("Explore: clear search, score range filter",
          lambda: (at.text_input(key="search").set_value(""), at.slider(key="score_range").set_value((0.5, 3.0)))[1]
          .run())
    timed("Explore: page 5 of the filtered table", lambda: at.number_input(key="page").set_value(5).run())
    chosen = runs.run_scores(open_store(), 1)[0][::20][:5000].tolist()

    def lasso():
        at.session_state["map_pick"] = {"space": "lf", "ids": chosen}  # what a lasso on the lf map sets
        return at.run()
    timed("Explore: a map selection of 5,000 points", lambda: lasso())
    timed("Explore: label filter 'conflict'", lambda: at.selectbox(key="label_filter").set_value("conflict").run())
    timed("Explore: label filter off, conflict queue",
          lambda: (at.selectbox(key="label_filter").set_value("(any)"), at.selectbox(key="sort").set_value("conflicts"))[1]
          .run())


if __name__ == "__main__":
    main()
