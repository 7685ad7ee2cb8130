"""`validate`: LoRA-tune a tiny random causal LM on a cut and matched baselines, compare on held-out prompts.

The manifest and selection are written by the builders `rank` uses (scar_core.export.manifest/export), so no
ranker is needed; the model is conftest's tiny random GPT-2 (no chat template), so every run takes seconds."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from scar_core import validate
from scar_core.cli import main
from scar_core.example import Example
from scar_core.export import describe_input, export, file_sha256, manifest, to_jsonl_lines
from scar_core.load import load

CUT = 6


def pool_rows(n: int = 40) -> list[dict]:
    """Two styles, lengths that vary with the row number."""
    return [{"instruction": f"Question {i}: how do I do task {i}?",
             "output": ("Sure! Here is how:\n\n1. First step.\n2. Second step.\n" * (1 + i % 2) if i % 2 else
                        f"You could try doing it slowly, I think. It took me {i} days. " * (1 + i % 4))}
            for i in range(n)]


def write_study(folder: Path, fmt: str = "alpaca", pool: Path | None = None, picks=None) -> Path:
    """A pool, a cut of CUT rows exported with its manifest as `rank` writes them; the manifest's path."""
    if pool is None:
        pool = folder / "pool.json"
        pool.write_text(json.dumps(pool_rows()))
    result = load(pool)
    kept = [result.examples[i] for i in (picks or range(1, 2 * CUT, 2))]
    info = manifest(kept, fmt, False,
                    inputs=[describe_input(str(pool), file_sha256(pool), result.format, result.rows,
                                           len(result.examples), 0)],
                    ranker={"location": "test", "encoder": "none", "weights_sha256": None, "identity": "test"},
                    device="cpu", precision="fp32", cleaning={"options": {"dedup": "exact", "lang": "any"}},
                    selection={"rule": "topk", "value": len(kept), "threshold_score": 0.0, "keep_flagged": False},
                    scope={"sample": False, "rows": len(result.examples), "of": len(result.examples)})
    return export(folder / "SELECTED.jsonl", kept, fmt, None, info).manifest_path


@pytest.fixture(autouse=True)
def one_thread():
    """A tiny model's matmuls gain nothing from a second thread, and on a busy machine two threads wait on
    each other (a tuning took 10x as long); the second-run check holds at any fixed thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def study(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # no judge unless a test names one
    return write_study(tmp_path)


def validate_cli(manifest_path: Path, tiny_lm: Path, *extra: str) -> int:
    return main(["validate", str(manifest_path), "--tune-model", str(tiny_lm), "--steps", "2", "--batch-size", "2",
                 "--lr", "0.01", "--eval-rows", "6", "--max-tokens", "48", "--device", "cpu", "--precision", "fp32",
                 *extra])


def written(manifest_path: Path) -> Path:
    return manifest_path.with_name("SELECTED.jsonl.validate.json")


def test_validate_tunes_every_subset_and_writes_the_table(study, tiny_lm, capsys):
    assert validate_cli(study, tiny_lm) == 0
    out = capsys.readouterr().out
    report = json.loads(written(study).read_text())
    rows = {r["subset"]: r for r in report["results"]}
    assert list(rows) == ["untuned", "cut", "random", "longest"]
    for name in rows:
        assert out.count(f"\n{name} ") == 1, out  # one table line per model
    assert report["baselines_from"] == "built here"
    assert rows["cut"]["rows"] == rows["random"]["rows"] == rows["longest"]["rows"] == CUT
    assert rows["cut"]["steps"] == 2 and rows["cut"]["rows_seen"] == 4
    # the token budget: each baseline trains until the row that reaches the cut's answer tokens
    for name in ("random", "longest"):
        assert rows["cut"]["answer_tokens"] <= rows[name]["answer_tokens"] < rows["cut"]["answer_tokens"] + 48
    assert rows["longest"]["steps"] <= rows["random"]["steps"]  # long answers reach the budget sooner
    # training changed the model, and the comparison is against the cut
    untuned = rows["untuned"]["eval_nll"]
    assert all(abs(rows[n]["eval_nll"] - untuned) > 1e-3 for n in ("cut", "random", "longest"))
    delta = rows["random"]["vs_cut"]
    assert delta["delta_nll"] == pytest.approx(rows["random"]["eval_nll"] - rows["cut"]["eval_nll"])
    assert delta["ci95"][0] <= delta["delta_nll"] <= delta["ci95"][1]
    assert report["eval"]["source"] == "held-out split of the pool" and report["eval"]["rows"] == 6
    # no judge endpoint: the column is there and says why it is empty
    assert report["judge"] is None and all(r["win_vs_random"] is None for r in report["results"])
    assert "win vs random" in out.splitlines()[0] and "win vs random: not measured: no judge endpoint" in out
    assert report["settings"]["trainer"].startswith("trl.SFTTrainer")


def test_a_second_run_with_the_same_seed_gives_the_same_numbers(study, tiny_lm, capsys):
    numbers = []
    for seed in ("0", "0", "1"):
        assert validate_cli(study, tiny_lm, "--seed", seed, "--steps", "1") == 0
        report = json.loads(written(study).read_text())
        numbers.append([(r["subset"], r["eval_nll"], r["answer_tokens"], r["steps"]) for r in report["results"]])
    assert numbers[0] == numbers[1]  # bit for bit
    assert numbers[0] != numbers[2]  # the seed matters: LoRA's start, row order, samples


def test_a_tampered_subset_is_refused_and_nothing_is_written(study, tiny_lm, capsys):
    selection = study.with_name("SELECTED.jsonl")
    lines = selection.read_text().splitlines()
    row = json.loads(lines[2])
    row["output"] += " (edited)"
    lines[2] = json.dumps(row)
    selection.write_text("\n".join(lines) + "\n")
    assert validate_cli(study, tiny_lm) == 2
    err = capsys.readouterr().err
    assert "changed since its manifest was written" in err and "Traceback" not in err
    assert not written(study).exists()


def test_a_changed_or_moved_pool_is_refused(study, tiny_lm, capsys):
    pool = study.parent / "pool.json"
    rows = json.loads(pool.read_text())
    pool.write_text(json.dumps(rows + [{"instruction": "one more", "output": "row"}]))
    assert validate_cli(study, tiny_lm) == 2
    err = capsys.readouterr().err
    assert "changed since the manifest was written" in err and "sha256" in err
    pool.rename(study.parent / "elsewhere.json")
    assert validate_cli(study, tiny_lm) == 2
    assert "was not found" in capsys.readouterr().err
    assert not written(study).exists()


def test_bad_eval_file_and_a_model_that_does_not_load_give_one_paragraph(study, tiny_lm, tmp_path, capsys):
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "a", "answer": "b"}\n')
    assert validate_cli(study, tiny_lm, "--eval", str(odd)) == 2
    err = capsys.readouterr().err
    assert "odd.jsonl, line 1: unknown row shape" in err and "Traceback" not in err
    assert main(["validate", str(study), "--tune-model", str(tmp_path / "no-model"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the model to tune" in err and "Traceback" not in err
    assert not written(study).exists()


def test_the_held_out_set_never_holds_a_row_a_subset_trains_on(study, tmp_path):
    s = validate.prepare(study, eval_rows=1000, seed=0)
    trained = {e.id for e in s.cut.examples} | {e.id for b in s.baselines for e in b.examples}
    held = {e.id for e in s.eval_examples}
    assert held and not held & trained
    assert len(held) + len({e.id for e in s.cut.examples}) <= 40
    # a user's eval file that repeats a cut row: that row is dropped and counted
    ev = tmp_path / "eval.jsonl"
    extra = [Example("What is two plus two?", "Four."), s.cut.examples[0]]
    ev.write_text("".join(to_jsonl_lines(extra, "alpaca")))
    s = validate.prepare(study, eval_path=str(ev), seed=0)
    assert [e.instruction for e in s.eval_examples] == ["What is two plus two?"]
    assert s.eval_info["trained_rows_dropped"] == 1


def test_baselines_listed_in_the_manifest_are_used_and_checked(study):
    info = json.loads(study.read_text())
    pool = load(study.parent / "pool.json").examples
    path = study.parent / "SELECTED.random.jsonl"
    path.write_text("".join(to_jsonl_lines(pool[20:20 + CUT], "alpaca")))
    info["baselines"] = [{"kind": "random", "path": str(path), "sha256": file_sha256(path), "rows": CUT}]
    study.write_text(json.dumps(info))
    s = validate.prepare(study, seed=0)
    assert s.baselines_from == "manifest" and [b.name for b in s.baselines] == ["random"]
    assert [e.id for e in s.baselines[0].examples] == [e.id for e in pool[20:20 + CUT]]
    path.write_text(path.read_text().replace("task", "chore"))
    with pytest.raises(validate.ScarError, match="baseline 'random'.*changed since the manifest"):
        validate.prepare(study, seed=0)


def test_the_baselines_rank_writes_are_the_ones_validate_tunes(study, tiny_checkpoint, capsys):
    out = study.parent / "ranked.jsonl"
    assert main(["rank", str(study.parent / "pool.json"), "--out", str(out), "--topk", str(CUT), "--baselines",
                 "--model", str(tiny_checkpoint), "--precision", "fp32", "--device", "cpu", "--lang", "any"]) == 0
    ranked = out.with_name(out.name + ".manifest.json")
    s = validate.prepare(ranked, eval_rows=5, seed=0)
    assert s.baselines_from == "manifest"
    assert [b.name for b in s.baselines] == ["random", "longest", "length-matched"]
    listed = json.loads(ranked.read_text())["baselines"]
    for b, item in zip(s.baselines, listed):
        assert len(b.examples) == item["rows"] == CUT and b.sha256 == file_sha256(b.path)
    trained = {e.id for e in s.cut.examples} | {e.id for b in s.baselines for e in b.examples}
    assert not trained & {e.id for e in s.eval_examples}
    Path(listed[1]["path"]).write_text(Path(listed[0]["path"]).read_text())  # longest replaced by random
    with pytest.raises(validate.ScarError, match="baseline 'longest'.*changed since the manifest"):
        validate.prepare(ranked, eval_rows=5, seed=0)


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "prompt_completion"])
def test_a_cut_of_conversations_is_recognised_in_any_export_shape(tmp_path, fmt):
    convs = [{"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"},
                                {"from": "human", "value": f"and task {i}?"}, {"from": "gpt", "value": f"done {i}."}]}
             for i in range(8)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(c) + "\n" for c in convs))
    path = write_study(tmp_path, fmt=fmt, pool=pool, picks=[1, 3, 5])  # second turns: they carry context
    info = validate.read_manifest(path)
    want = [load(pool).examples[i].id for i in (1, 3, 5)]
    assert [e.id for e in validate.read_cut(path, info, validate.read_pool(info, tmp_path)).examples] == want
    if fmt == "prompt_completion":  # earlier turns flattened into the prompt: only the pool can say which rows
        with pytest.raises(validate.ScarError, match="changed since its manifest"):
            validate.read_cut(path, info, None)
    else:  # the export itself holds them (an Alpaca row's history and system)
        assert [e.id for e in validate.read_cut(path, info, None).examples] == want


def test_the_training_plan_meets_the_budget():
    lengths = [10, 50, 5, 30]
    by_steps = validate.training_plan(lengths, 2, seed=3, steps=5)
    assert len(by_steps) == 10 and sorted(by_steps[:4]) == [0, 1, 2, 3]  # whole passes, each shuffled
    by_tokens = validate.training_plan(lengths, 2, seed=3, tokens=120)
    total = np.cumsum([lengths[i] for i in by_tokens])
    assert total[-1] >= 120 and total[-2] < 120  # stops at the row that reaches the budget
    assert by_tokens == validate.training_plan(lengths, 2, seed=3, tokens=120)


def test_ratios_give_a_curve_for_the_cut_and_random(study, tiny_lm, capsys):
    pool = load(study.parent / "pool.json").examples
    scores = study.parent / "scores.jsonl"
    scores.write_text("".join(json.dumps({"id": e.id, "score": float(i % 7)}) + "\n" for i, e in enumerate(pool)))
    assert validate_cli(study, tiny_lm, "--ratios", "0.5") == 2
    assert "--ratios needs --scores" in capsys.readouterr().err
    s = validate.prepare(study, eval_rows=6, seed=0, need_pool=True)
    settings = validate.Settings(steps=1, batch_size=2, learning_rate=0.01, max_tokens=48, device="cpu",
                                 precision="fp32")
    curve = validate.curve(s, validate.load_base(str(tiny_lm)), settings, [0.25, 1.0],
                           validate.read_scores(scores), log=lambda m: None)
    assert [(c["ratio"], c["subset"]) for c in curve] == [(0.25, "cut"), (0.25, "random"), (1.0, "cut"), (1.0, "random")]
    assert curve[2]["rows"] == curve[3]["rows"] > curve[0]["rows"] == curve[1]["rows"]
    held = {e.id for e in s.eval_examples}
    assert curve[2]["rows"] == 40 - len(held)  # the whole pool but the held-out rows (no duplicates here)
    assert all(c["eval_nll"] > 0 for c in curve)


class LongerWins(BaseHTTPRequestHandler):
    """/v1/chat/completions of a judge that prefers the longer response and, when both are as long, says "A"
    (a position bias, which the swap turns into an inconsistent pair); it records every (A, B) it is shown."""

    seen: list[tuple[str, str]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["temperature"] == 0.0
        text = body["messages"][-1]["content"]
        a, b = (re.search(rf"\[Response {x}\]\n(.*?)\n\[End of Response {x}\]", text, re.S).group(1) for x in "AB")
        type(self).seen.append((a, b))
        answer = "B" if len(b) > len(a) else "A"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    LongerWins.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), LongerWins)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_judge_on_loopback_gives_win_rates_against_random_with_positions_swapped(study, tiny_lm, judge_url, capsys):
    assert validate_cli(study, tiny_lm, "--base-url", judge_url, "--judge-model", "longer-wins", "--judge-rows", "4",
                        "--gen-tokens", "12") == 0
    out = capsys.readouterr().out
    report = json.loads(written(study).read_text())
    answers = report["generations"]
    assert len(answers["prompt_ids"]) == 4 and set(answers) == {"prompt_ids", "cut", "random", "longest"}
    assert len(LongerWins.seen) == 2 * 4 * 2  # cut and longest against random, each pair in both orders
    rows = {r["subset"]: r for r in report["results"]}
    for name in ("cut", "longest"):
        for mine, theirs in zip(answers[name], answers["random"]):
            assert (mine, theirs) in LongerWins.seen and (theirs, mine) in LongerWins.seen  # the swap happened
        # longer wins both orders; as long: "A" both times, inconsistent, half
        expected = [1.0 if len(m) > len(t) else 0.0 if len(m) < len(t) else 0.5
                    for m, t in zip(answers[name], answers["random"])]
        won = rows[name]["win_vs_random"]
        assert won["win_rate"] == pytest.approx(np.mean(expected))
        assert won["wins"] == expected.count(1.0) and won["losses"] == expected.count(0.0)
        assert won["inconsistent"] == expected.count(0.5) and won["ties"] == 0
        assert won["ci95"][0] <= won["win_rate"] <= won["ci95"][1]
        assert f"{won['win_rate']:.1%} [" in next(line for line in out.splitlines() if line.startswith(name + " "))
    assert rows["random"]["win_vs_random"] is None and rows["untuned"]["win_vs_random"] is None
    assert report["judge"]["model"] == "longer-wins" and "bootstrap" in report["judge"]["rule"]
    assert "(reference)" in next(line for line in out.splitlines() if line.startswith("random "))


def test_the_judge_asks_each_ordered_pair_once_and_a_later_run_only_what_is_missing(judge_url, tmp_path):
    """Judge calls cost money: replies are kept as they arrive (the synth call cache), so judging again, or
    resuming a validation that stopped part way, asks only the pairs not yet answered."""
    from scar_core.synth.cache import CallCache
    from scar_core.synth.openai_backend import OpenAIBackend

    ex = [Example(f"q{i}", "r") for i in range(4)]
    mine, theirs = [f"a longer answer {i}" for i in range(4)], [f"short {i}" for i in range(4)]
    judge = validate.Judge(OpenAIBackend(judge_url, "longer-wins"), base_url=judge_url,
                           cache=CallCache(tmp_path / "judge.sqlite"))
    first = validate.win_rate(judge, ex[:3], mine[:3], theirs[:3], seed=0)
    assert len(LongerWins.seen) == 6 and first["judge_calls_cached"] == 0 and first["win_rate"] == 1.0
    again = validate.win_rate(judge, ex[:3], mine[:3], theirs[:3], seed=0)
    assert len(LongerWins.seen) == 6 and again["judge_calls_cached"] == 6  # nothing asked twice
    assert {k: v for k, v in again.items() if k != "judge_calls_cached"} == \
        {k: v for k, v in first.items() if k != "judge_calls_cached"}
    more = validate.win_rate(judge, ex, mine, theirs, seed=0)
    assert len(LongerWins.seen) == 8 and more["judge_calls_cached"] == 6 and more["judge_calls"] == 8
    judge.client.close()
    judge.cache.close()


def test_the_verdict_and_the_win_rate_rule():
    assert [validate.verdict(r) for r in ("A", " b.", "Response B", "T", "tie", "Both are fine", "")] == \
        ["A", "B", "B", "tie", "tie", None, None]

    class Says(validate.Client):
        name, model = "fixed", "fixed"

        def __init__(self, replies):
            self.replies = iter(replies)

        def generate(self, prompt, temperature=0.0, max_tokens=512):
            return next(self.replies)

    ex = [Example(f"q{i}", "r") for i in range(4)]
    # per prompt (mine as A, then mine as B): win both, lose both, tie both, unreadable + win
    judge = validate.Judge(Says(["A", "B", "B", "A", "T", "tie", "???", "B"]))
    won = validate.win_rate(judge, ex, ["m"] * 4, ["t"] * 4, seed=0)
    assert won["win_rate"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert (won["wins"], won["losses"], won["ties"], won["inconsistent"], won["unreadable_replies"]) == (1, 1, 1, 1, 1)
