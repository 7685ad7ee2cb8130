"""A pair's scores are a function of the pair alone, bit for bit (Issue 26): the same whatever the batch
size, the chunks, the order and the other pairs scored with it, on every path (the library, the CLI,
the app's scoring job after a cache fill, the Ray engine's actors), at fp32 and at the CPU's native bf16."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scar_core.device import resolve_precision
from scar_core.score import Scores, score_examples, score_pairs
from tests.conftest import tiny_ranker

NATIVE_BF16 = resolve_precision("auto", torch.device("cpu")) == torch.bfloat16
PRECISIONS = ["fp32", pytest.param("bf16", marks=pytest.mark.skipif(
    not NATIVE_BF16, reason="this CPU computes bf16 natively neither with AVX-512-BF16 nor with AMX"))]
WORDS = ("the a model answer data style form list step river cloud quick brown fox jumps over lazy dog "
         "because therefore however first second finally code table value").split()


def pool(rows: int = 40) -> tuple[list[str], list[str]]:
    """Pairs of many lengths (1 to 150 response words), some sharing an instruction."""
    instructions = [f"Task {i % 7 if i % 5 == 0 else i}: " + " ".join(WORDS[(i + j) % len(WORDS)]
                                                                 for j in range(i * 11 % 40)) for i in range(rows)]
    responses = [" ".join(WORDS[(i * j + j) % len(WORDS)] for j in range(i * 37 % 150 + 1)) for i in range(rows)]
    return instructions, responses


def alpaca_file(path, rows: int = 40):
    instructions, responses = pool(rows)
    path.write_text(json.dumps([{"instruction": i, "output": r} for i, r in zip(instructions, responses)]))
    return path


@pytest.fixture(params=["plain", "lm"])
def checkpoint(request, tmp_path_factory):
    """A saved tiny ranker, plain or with a (tiny, random) measured LM term."""
    from scar_core.ranker import LMTerm

    ranker = tiny_ranker()
    if request.param == "lm":
        ranker.add_lm_term(LMTerm(str(request.getfixturevalue("tiny_lm")), mean=3.0, std=2.0))
        ranker.lm_weight.data.fill_(0.5)
    return ranker.save(tmp_path_factory.mktemp(f"ranker-{request.param}"))


def assert_same(got: Scores, expected: Scores, rows=slice(None)) -> None:
    for field in ("score", "v_lf", "v_is", "lm_nll", "lm_part"):
        want = getattr(expected, field)
        if want is not None:
            assert np.array_equal(getattr(got, field), want[rows], equal_nan=True), field


@pytest.mark.parametrize("precision", PRECISIONS)
def test_batch_size_chunks_order_and_company_leave_every_bit(checkpoint, precision):
    from scar_core.ranker import load_ranker

    ranker = load_ranker(checkpoint)
    instructions, responses = pool()
    options = dict(device="cpu", precision=precision)
    whole = score_pairs(ranker, instructions, responses, batch_size=64, **options)
    for shape in (dict(batch_size=1), dict(batch_size=8, chunk_rows=5), dict(token_budget=256, chunk_rows=13)):
        assert_same(score_pairs(ranker, instructions, responses, **shape, **options), whole)
    order = np.random.default_rng(0).permutation(len(responses))
    shuffled = score_pairs(ranker, [instructions[i] for i in order], [responses[i] for i in order], **options)
    assert_same(shuffled, whole, order)
    for rows in (slice(0, 10), slice(3, None, 4)):
        assert_same(score_pairs(ranker, instructions[rows], responses[rows], **options), whole, rows)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_ray_actor_blocks_score_as_the_whole_pool(checkpoint, precision):
    from scar_core.jobs.ray import RankerActor
    from scar_core.ranker import load_ranker

    instructions, responses = pool()
    whole = score_pairs(load_ranker(checkpoint), instructions, responses, device="cpu", precision=precision)
    actor = RankerActor(str(checkpoint), None, "cpu", precision, None)
    for lo in range(0, len(responses), 16):
        rows = slice(lo, lo + 16)
        block = actor({"row": np.arange(len(responses))[rows], "instruction": np.array(instructions[rows], object),
                       "response": np.array(responses[rows], object), "left": np.zeros(len(responses[rows]), bool)})
        assert np.array_equal(block["score"], whole.score[rows])


def test_cli_batch_size_does_not_change_a_score(tmp_path, tiny_checkpoint):
    from tests.test_cli import run

    path = alpaca_file(tmp_path / "pool.json")
    lines = {}
    for size in ("8", "64"):
        out = tmp_path / f"scores-{size}.jsonl"
        proc = run("score", str(path), "--out", str(out), "--model", str(tiny_checkpoint), "--device", "cpu",
                   "--precision", "auto", "--batch-size", size)
        assert proc.returncode == 0, proc.stderr
        lines[size] = [json.loads(line)["score"] for line in out.read_text().splitlines()]
    assert len(lines["8"]) == 40 and lines["8"] == lines["64"]


@pytest.mark.parametrize("precision", ["fp32", pytest.param("auto", marks=pytest.mark.skipif(
    not NATIVE_BF16, reason="auto is fp32 on this CPU, as the fp32 case"))])
def test_the_app_job_scoring_what_the_store_lacks_gives_the_librarys_scores(store, tmp_path, checkpoint,
                                                                            precision):
    """The job copies the rows a first run scored (a smaller file) from the store, scores the rest in a
    first chunk of 8 and chunks of 64; every stored score is score_examples' over the whole pool."""
    from db import runs
    from scar_core.jobs import datasets as importing
    from scar_core.jobs.runner import run_job
    from scar_core.jobs.score import submit_score
    from scar_core.load import load
    from scar_core.ranker import load_ranker

    path = alpaca_file(tmp_path / "pool.json")
    for part in (alpaca_file(tmp_path / "part.json", rows=15), path):
        run = submit_score(store, importing.import_file(store, part).id, model=str(checkpoint), device="cpu",
                           precision=precision, launch=False)
        assert run_job(store, run.job_id).status == "done"
    assert run.precision == ("bf16" if precision == "auto" else "fp32")
    expected = score_examples(load_ranker(checkpoint), load(path).examples, device="cpu", precision=run.precision)
    assert np.array_equal(runs.run_scores(store, run.id)[1], expected.score)
