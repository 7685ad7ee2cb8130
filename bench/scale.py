"""The app's heavy steps at pool scale: the map job and the Select page on a synthetic scored store.

    python bench/scale.py [--rows 100000] [--db URL]   (default: a fresh SQLite file in a temp folder)

Builds a store with one scored run of --rows examples whose v_lf / v_is vectors (384-d) come from
a mixture of clusters, so UMAP sees structure. Times the map job's steps (read both vector sets,
project them, store both layouts), the Explore page's reads of the stored map, and the Select
page's cut (all scores, cut by ratio, store the selection). Prints one line per step with its
wall-clock time and the machine's load average. The paged Explore queries are timed by
bench/store.py.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic_store import fill_run, import_pairs, new_run, timed  # noqa: E402
from db import maps, open_store, runs, selections  # noqa: E402
from scar_core.map import style_map  # noqa: E402
from scar_core.select import cut  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--db", help="store URL or path (default: a new SQLite file)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scar-scale-bench-"))
    store = open_store(args.db or str(folder / "scale.db"))
    rng = np.random.default_rng(0)
    run_id = timed(f"build store: {args.rows} scored rows with 2 x 384-d vectors",
                   lambda: _build(store, folder, args.rows, rng), width=52)

    print("map job")
    ids, v_lf = timed("  run_vectors lf", lambda: runs.run_vectors(store, run_id, "lf"))
    _, v_is = timed("  run_vectors is", lambda: runs.run_vectors(store, run_id, "is"))
    layout = timed("  style_map (PCA 50 + kNN + UMAP, both spaces)", lambda: style_map(v_lf, v_is))
    timed("  save_map, both spaces", lambda: (maps.save_map(store, run_id, "lf", ids, layout.lf),
                                               maps.save_map(store, run_id, "is", ids, layout.is_)))
    print(f"  (method {layout.method}; the first UMAP call in a process includes numba's compilation)")

    print("Explore page")
    points = timed("  map_points lf (the stored layout with scores)", lambda: maps.map_points(store, run_id, "lf"))
    assert len(points["x"]) == args.rows

    print("Select page")
    ids, scores = timed("  run_scores (every score)", lambda: runs.run_scores(store, run_id))
    chosen = timed("  cut, best 30%", lambda: cut(scores, ratio=0.3))
    timed("  save_selection", lambda: selections.save_selection(
        store, run_id, "best 30%", chosen.rule, chosen.params(), ids[chosen.kept]))
    again = cut(scores, ratio=0.25)
    timed("  save_selection, a new version of the name", lambda: selections.save_selection(
        store, run_id, "best 30%", again.rule, again.params(), ids[again.kept], replace=True))
    timed("  list_selections (latest of each name)", lambda: selections.list_selections(store, run_id))


def _build(store, folder: Path, rows: int, rng: np.random.Generator) -> int:
    run = new_run(store, import_pairs(store, folder, rows, rng))
    fill_run(store, run, rng, commit_rows=2000)
    return run.id


if __name__ == "__main__":
    main()
