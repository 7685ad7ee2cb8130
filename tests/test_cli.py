"""The score and rank commands end to end, in a subprocess as a user runs them."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

POOL = [{"instruction": f"Explain item {i}", "input": "", "output": "Short." if i % 2 else "A longer answer " * (i + 1)}
        for i in range(12)]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "scar_core", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(POOL))
    return path


def test_score_writes_one_line_per_pair_in_input_order(tmp_path, pool, tiny_checkpoint):
    out = tmp_path / "scores.jsonl"
    proc = run("score", str(pool), "--out", str(out), "--model", str(tiny_checkpoint), "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(POOL)
    assert [r["where"] for r in rows] == [f"row {i + 1}" for i in range(len(POOL))]
    assert all(isinstance(r["score"], float) and len(r["id"]) == 24 for r in rows)


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages"])
def test_rank_exports_the_best_subset_with_manifest(tmp_path, pool, tiny_checkpoint, fmt):
    scores_path, out = tmp_path / "scores.jsonl", tmp_path / "top.jsonl"
    assert run("score", str(pool), "--out", str(scores_path), "--model", str(tiny_checkpoint),
               "--precision", "fp32").returncode == 0
    proc = run("rank", str(pool), "--out", str(out), "--ratio", "0.25", "--format", fmt, "--with-scores",
               "--model", str(tiny_checkpoint), "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == 3
    best = sorted((json.loads(line)["score"] for line in scores_path.read_text().splitlines()), reverse=True)[:3]
    assert [round(r["score"], 5) for r in kept] == [round(s, 5) for s in best]
    manifest = json.loads((tmp_path / "top.jsonl.manifest.json").read_text())
    assert manifest["selection"]["kept"] == 3 and manifest["inputs"][0]["rows"] == len(POOL)
    assert len(manifest["selected_ids_sha256"]) == 64


def test_bad_file_and_bad_model_give_a_message_not_a_traceback(tmp_path, pool, tiny_checkpoint):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": 5}\n')
    proc = run("score", str(bad), "--out", str(tmp_path / "o.jsonl"), "--model", str(tiny_checkpoint))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "bad.jsonl, line 2: field 'output': expected text, got a number" in proc.stderr
    proc = run("score", str(pool), "--out", str(tmp_path / "o.jsonl"), "--model", str(tmp_path / "nowhere"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "not a ranker checkpoint" in proc.stderr


def test_rank_applies_several_annotators_labels_under_a_policy(tmp_path, pool, tiny_checkpoint):
    scores_path = tmp_path / "scores.jsonl"
    assert run("score", str(pool), "--out", str(scores_path), "--model", str(tiny_checkpoint),
               "--precision", "fp32").returncode == 0
    ranked = sorted((json.loads(line) for line in scores_path.read_text().splitlines()), key=lambda r: -r["score"])
    best, worst = ranked[0]["id"], ranked[-1]["id"]
    labels = tmp_path / "labels.jsonl"  # two of three drop the best row; a lead keeps the worst
    labels.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": best, "label": "drop", "annotator": "ann"}, {"id": best, "label": "drop", "annotator": "bob"},
        {"id": best, "label": "keep", "annotator": "cy"}, {"id": worst, "label": "drop", "annotator": "ann"},
        {"id": worst, "label": "keep", "annotator": "lead", "adjudication": True}]))
    kept = {}
    for policy in ("lead-then-majority", "lead-then-unanimous"):
        out = tmp_path / f"{policy}.jsonl"
        proc = run("rank", str(pool), "--out", str(out), "--ratio", "0.25", "--with-scores", "--labels", str(labels),
                   "--label-policy", policy, "--model", str(tiny_checkpoint), "--precision", "fp32")
        assert proc.returncode == 0, proc.stderr
        kept[policy] = [round(json.loads(line)["score"], 5) for line in out.read_text().splitlines()]
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        applied = manifest["selection"]["labels"]
        assert applied["policy"] == policy and len(applied["verdicts_sha256"]) == 64
        majority = policy == "lead-then-majority"
        assert applied["rows"] == {"adjudicated": 1, "unanimous": 0, "majority": int(majority),
                                   "unresolved": int(not majority)}
        assert manifest["selection"]["overrides"] == {"forced_in": 1, "forced_out": int(majority)}
    top = lambda r: round(r["score"], 5)  # noqa: E731
    # the cut is made first (the best 3), then the labels force rows out and in; nothing refills
    assert kept["lead-then-majority"] == [top(r) for r in ranked[1:3]] + [top(ranked[-1])]
    assert kept["lead-then-unanimous"] == [top(r) for r in ranked[:3]] + [top(ranked[-1])]
    proc = run("rank", str(pool), "--out", str(tmp_path / "x.jsonl"), "--ratio", "0.25", "--labels", str(labels),
               "--label-policy", "loudest", "--model", str(tiny_checkpoint))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "--label-policy" in proc.stderr


def test_rank_writes_matched_baselines_and_a_coverage_cut(tmp_path, tiny_checkpoint, capsys):
    """Issue 27: `rank --baselines` writes the random, longest and length-matched subsets of the cut's
    size beside it, listed with the evidence in the cut's manifest; --coverage 0 is today's cut."""
    from scar_core.cli import main
    from tests.conftest import style_pool

    pool = style_pool(tmp_path, rows=40, every=3)
    common = ["rank", str(pool), "--model", str(tiny_checkpoint), "--device", "cpu", "--precision", "fp32",
              "--ratio", "0.25", "--dedup", "none", "--lang", "any"]
    assert main([*common, "--out", str(tmp_path / "plain.jsonl")]) == 0, capsys.readouterr().err
    assert main([*common, "--coverage", "0", "--out", str(tmp_path / "zero.jsonl")]) == 0
    assert (tmp_path / "plain.jsonl").read_bytes() == (tmp_path / "zero.jsonl").read_bytes()
    out = tmp_path / "cut.jsonl"
    assert main([*common, "--coverage", "1", "--baselines", "--out", str(out)]) == 0, capsys.readouterr().err
    info = json.loads((tmp_path / "cut.jsonl.manifest.json").read_text())
    assert info["rows"] == 10 and info["selection"]["ordering"]["coverage"] == 1.0
    assert [b["kind"] for b in info["baselines"]] == ["random", "longest", "length-matched"]
    for listed in info["baselines"]:
        path = tmp_path / f"cut.{listed['kind']}.jsonl"
        assert listed["path"] == str(path) and listed["rows"] == 10
        assert len(path.read_text().splitlines()) == 10
        assert json.loads(path.with_name(path.name + ".manifest.json").read_text())["selection"]["ordering"]["k"] == 10
    assert list(info["evidence"]["subsets"]) == ["cut", "random", "longest", "length-matched"]
    assert info["evidence"]["subsets"]["cut"]["clusters touched"] >= info["evidence"]["subsets"]["longest"]["clusters touched"]
    assert main([*common, "--coverage", "1.5", "--out", str(out)]) == 2
    assert "--coverage takes a number from 0 to 1" in capsys.readouterr().err
