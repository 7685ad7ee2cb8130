"""The Export page's matched-baselines bundle (issue 27): one zip holding the saved cut, its random,
longest and length-matched baselines and one manifest listing all four; byte for byte what
`rank --baselines` writes for the same options (one rule, the same rows from every path)."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from db import open_store, runs
from scar_core.cli import main
from scar_core.errors import ScarError
from scar_core.jobs import labelling, selection
from scar_core.jobs.datasets import import_file
from scar_core.jobs.export import ExportPackage
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.test_one_rule import pool  # noqa: F401 (a fixture: duplicates, other languages, an echo, an empty answer, a refusal)

RATIO = 0.5
KINDS = ("random", "longest", "length-matched")
CLEAN = {"dedup": "near", "lang": "en", "echoes": "drop", "empty": "drop", "refusals": "keep"}  # rank's defaults


@pytest.fixture
def scored(tmp_path, pool, tiny_checkpoint):  # noqa: F811
    """(store, the finished run) of the pool scored by the tiny ranker, cleaned as `rank` cleans by default."""
    store = open_store(f"sqlite:///{tmp_path / 'studio.db'}")
    dataset = import_file(store, pool)
    run = submit_score(store, dataset.id, model=str(tiny_checkpoint), device="cpu", precision="fp32", clean=CLEAN,
                       launch=False)
    assert run_job(store, run.job_id).status == "done"
    return store, runs.get_run(store, run.id)


def save_cut(store, run, name: str, coverage: float):
    """Cut the run as the Select page does (labels applied, flagged rows left out) and save it."""
    table = selection.run_table(store, run.id)
    space = selection.run_space(store, run.id, table) if coverage else None
    cut, table = selection.select_run(store, run.id, "ratio", RATIO, table=table, coverage=coverage, space=space)
    saved = selection.save(store, run.id, name, cut, table)
    assert saved.new
    return saved.selection


def label_near_the_cut(store, run) -> None:
    """Drop the best-scored eligible row and keep the worst: labels move rows in and out of every subset."""
    table = selection.run_table(store, run.id)
    cut, _ = selection.select_run(store, run.id, "ratio", RATIO, table=table)
    ids = table["example_id"].to_numpy()[cut.pool]
    order = np.argsort(-table["score"].to_numpy()[cut.pool], kind="stable")
    labelling.label(store, run.id, [int(ids[order[0]])], "drop", "ann")
    labelling.label(store, run.id, [int(ids[order[-1]])], "keep", "ann")


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


@pytest.mark.parametrize("coverage", [0.0, 0.5, 1.0])
def test_the_bundle_holds_what_rank_baselines_writes(tmp_path, capsys, pool, tiny_checkpoint, scored,  # noqa: F811
                                                     coverage):
    store, run = scored
    label_near_the_cut(store, run)
    saved = save_cut(store, run, "same", coverage)
    assert saved.params["seed"] == 0  # what the bundle reseeds its baselines (and clustering) with

    files = unzip(ExportPackage(store, run, saved, "alpaca", True).bundle("cut.jsonl"))

    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_bytes(labelling.labels_file(store, run.id))
    out = tmp_path / "cli" / "cut.jsonl"
    code = main(["rank", str(pool), "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu",
                 "--ratio", str(RATIO), "--labels", str(labels_file), "--coverage", str(coverage), "--baselines",
                 "--seed", "0", "--with-scores", "--out", str(out)])
    assert code == 0, capsys.readouterr().err

    # four JSONL files and one manifest, the files byte for byte the CLI's
    assert sorted(files) == sorted(["cut.jsonl", *(f"cut.{kind}.jsonl" for kind in KINDS), "cut.jsonl.manifest.json"])
    for name in ["cut.jsonl", *(f"cut.{kind}.jsonl" for kind in KINDS)]:
        assert files[name] == (out.parent / name).read_bytes(), name
    app = json.loads(files["cut.jsonl.manifest.json"])
    cli = json.loads((out.parent / "cut.jsonl.manifest.json").read_text())
    rows = {name: len(data.splitlines()) for name, data in files.items() if name.endswith("l")}
    assert rows["cut.jsonl"] == app["rows"] == len(saved.example_ids) > 0
    assert [(b["path"], b["rows"]) for b in app["baselines"]] == [(f"cut.{kind}.jsonl", rows[f"cut.{kind}.jsonl"])
                                                                 for kind in KINDS]
    assert all(rows[f"cut.{kind}.jsonl"] == app["rows"] for kind in KINDS)  # matched: as many rows as the cut
    # the same manifest, evidence included, but for where the files lie and what only the store knows
    assert app.pop("path") == "cut.jsonl" and app.pop("saved")["name"] == "same"
    for listed in cli["baselines"]:
        listed["path"] = listed["path"].rpartition("/")[2]
    assert app == {k: v for k, v in cli.items() if k != "path"}
    assert app["evidence"]["subsets"]["cut"]["rows"] == app["rows"]
    assert app["selection"]["overrides"] == {"forced_in": 1, "forced_out": 1}
    assert [b["made"]["seed"] for b in app["baselines"]] == [0, None, 0]
    if coverage:
        assert app["selection"]["ordering"]["coverage"] == coverage


def test_a_cut_that_labels_have_moved_since_it_was_saved_has_no_bundle(scored):
    """Its baselines would match another cut: the page says why and asks for the cut to be saved again."""
    store, run = scored
    saved = save_cut(store, run, "before", 0.0)
    assert ExportPackage(store, run, saved, "alpaca", False).bundle_problem() is None
    label_near_the_cut(store, run)
    package = ExportPackage(store, run, saved, "alpaca", False)
    assert "no longer comes out as it was saved (labels, " in package.bundle_problem()
    with pytest.raises(ScarError, match="Save the cut again on the Select page"):
        package.bundle("cut.jsonl")
    again = save_cut(store, run, "after", 0.0)
    assert len(unzip(ExportPackage(store, run, again, "alpaca", False).bundle("cut.jsonl"))) == 5


def test_the_same_bundle_twice_is_the_same_bytes(scored):
    store, run = scored
    saved = save_cut(store, run, "twice", 0.0)
    first = ExportPackage(store, run, saved, "sharegpt", False).bundle("x.jsonl")
    assert ExportPackage(store, run, saved, "sharegpt", False).bundle("x.jsonl") == first


def test_a_cut_on_a_blend_of_signals_gets_its_bundle(scored):
    """The cut is remade with its saved weights; its baselines match its size, pool and labels."""
    from scar_core.jobs import signals

    store, run = scored
    signals.add_signal(store, run.id, "length", made_by="lead")
    table = selection.run_table(store, run.id)
    cut, table = selection.select_run(store, run.id, "ratio", RATIO, table=table, weights={"scar": 1, "length": 2})
    plain, _ = selection.select_run(store, run.id, "ratio", RATIO, table=table)
    assert cut.kept.tolist() != plain.kept.tolist()  # the blend moved the cut
    saved = selection.save(store, run.id, "blend", cut, table).selection
    package = ExportPackage(store, run, saved, "alpaca", False)
    files = unzip(package.bundle("b.jsonl"))
    assert files["b.jsonl"] == package.jsonl()
    info = json.loads(files["b.jsonl.manifest.json"])
    assert info["selection"]["blend"]["weights"] == {"scar": 1, "length": 2}
    assert [b["rows"] for b in info["baselines"]] == [len(cut.kept)] * 3


def test_a_coverage_cut_spreads_over_the_same_clusters_as_rank_when_cleaning_leaves_rows_out(tmp_path, capsys,
                                                                                             tiny_checkpoint):
    """The clusters a coverage cut spreads over are those of the rows it may take (rank clusters only
    those; the app once clustered every scored row, flagged ones too, and cut other rows)."""
    rows = [{"instruction": f"Question {i}: how do I do task {i}?",
             "output": f"Sure! Here is how:\n\n1. First step.\n2. Second step {i}.\n" if i % 3 else
             f"You could try doing it slowly, I think. It took me {i} days."} for i in range(40)]
    rows += [{"instruction": f"Frage {i}", "output": "Pflanzen nutzen Sonnenlicht, um aus Wasser und Kohlendioxid "
              f"Zucker herzustellen, Nummer {i}; dabei wird Sauerstoff frei."} for i in range(12)]
    rows += [{"instruction": "Question 1: how do I do task 1?",
              "output": "Sure! Here is how:\n\n1. First step.\n2. Second step 1.\n" + "x" * (i % 2)} for i in range(10)]
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = open_store(f"sqlite:///{tmp_path / 'studio.db'}")
    run = submit_score(store, import_file(store, path).id, model=str(tiny_checkpoint), device="cpu", precision="fp32",
                       clean=CLEAN, launch=False)
    assert run_job(store, run.job_id).status == "done"
    run = runs.get_run(store, run.id)
    table = selection.run_table(store, run.id)
    space = selection.run_space(store, run.id, table)
    files = {}
    for ratio in (0.1, 0.3):
        cut, _ = selection.select_run(store, run.id, "ratio", ratio, table=table, coverage=1.0, space=space)
        saved = selection.save(store, run.id, f"r{ratio}", cut, table).selection
        files[ratio] = unzip(ExportPackage(store, run, saved, "alpaca", False).bundle("cut.jsonl"))
    assert table["left_out_by"].notna().sum() == 12  # the other language
    labels_file = tmp_path / "labels.jsonl"  # nobody labelled: the page applies labels, there are none
    labels_file.write_bytes(labelling.labels_file(store, run.id))
    for ratio, bundle in files.items():
        out = tmp_path / f"cli{ratio}" / "cut.jsonl"
        assert main(["rank", str(path), "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu",
                     "--ratio", str(ratio), "--coverage", "1", "--baselines", "--labels", str(labels_file),
                     "--out", str(out)]) == 0, capsys.readouterr().err
        for name in ("cut.jsonl", *(f"cut.{kind}.jsonl" for kind in KINDS)):
            assert bundle[name] == (out.parent / name).read_bytes(), (ratio, name)
        cli = json.loads((out.parent / "cut.jsonl.manifest.json").read_text())
        app = json.loads(bundle["cut.jsonl.manifest.json"])
        assert app["selection"] == cli["selection"] and app["evidence"] == cli["evidence"]


@pytest.mark.parametrize("coverage", [0.0, 0.5])
def test_the_select_panel_shows_the_figures_the_bundle_manifest_records(scored, coverage):
    """The evidence panel on Select and the bundle's manifest describe the same four subsets with the same
    numbers (lengths in the store's words, clusters of the cut's own pool)."""
    store, run = scored
    label_near_the_cut(store, run)
    table = selection.run_table(store, run.id)
    space = selection.run_space(store, run.id, table)
    cut, table = selection.select_run(store, run.id, "ratio", RATIO, table=table, coverage=coverage, space=space)
    panel = selection.run_evidence(cut, table, space, labelling.resolution(store, run.id))
    saved = selection.save(store, run.id, f"panel-{coverage}", cut, table).selection
    recorded = json.loads(unzip(ExportPackage(store, run, saved, "alpaca", False).bundle("c.jsonl"))["c.jsonl.manifest.json"])
    subsets = recorded["evidence"]["subsets"]
    assert list(panel.index) == list(subsets) == ["cut", *KINDS]
    for name, figures in subsets.items():
        for column in ("rows", "clusters touched", "cluster share", "length mean", "length median", "mean score",
                       "overlap with longest", "diversity", "keep precision"):
            assert panel.loc[name, column] == pytest.approx(figures[column], rel=1e-9, nan_ok=True), (name, column)
