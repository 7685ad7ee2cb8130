"""The bad-input corpus (tests/bad_input/, expectations in EXPECTED.json), generated hostile files,
and the command line on a representative subset: every file either loads, or fails with a message
naming the file, the line/row and what is wrong; lenient mode keeps every valid row."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scar_core.errors import InputError, ScarError
from scar_core.load import load
from scar_core.training_data import read_training_rows

CORPUS = Path(__file__).resolve().parent / "bad_input"
EXPECTED = json.loads((CORPUS / "EXPECTED.json").read_text())
ROOT = Path(__file__).resolve().parent.parent


def test_corpus_is_complete():
    files = {p.name for p in CORPUS.iterdir() if p.name != "EXPECTED.json"}
    assert files == set(EXPECTED)
    assert len(files) >= 40


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if "reader" not in e))
def test_strict_mode(name):
    path, want = CORPUS / name, EXPECTED[name]
    if want["strict"] is None:
        result = load(path)
        assert (result.rows, result.rejected) == (want["rows"], [])
        assert all(ex.instruction.strip() and ex.response.strip() for ex in result.examples)
        return
    with pytest.raises(ScarError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert re.search(want["strict"], message), message


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.get("strict") and "reader" not in e))
def test_lenient_mode_keeps_every_valid_row(name):
    path, want = CORPUS / name, EXPECTED[name]
    if want["lenient_kept"] is None:  # a problem with the whole file: lenient mode cannot help
        with pytest.raises(ScarError, match=re.escape(str(path))):
            load(path, lenient=True)
        return
    result = load(path, lenient=True)
    assert result.rows - len(result.rejected) == want["lenient_kept"]
    assert result.rejected and all(r.where and r.reason for r in result.rejected)
    assert re.search(want["strict"], result.rejected[0].message(str(path)))
    assert {ex.meta["where"] for ex in result.examples}.isdisjoint(r.where for r in result.rejected)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.get("reader") == "training"))
def test_training_files(name):
    with pytest.raises(InputError) as caught:
        read_training_rows([CORPUS / name])
    assert re.search(EXPECTED[name]["strict"], str(caught.value)), str(caught.value)


def test_valid_variants_load_the_same_text():
    """BOM, CRLF and quoted newlines are valid input and give the same text as the plain file."""
    bom, crlf = load(CORPUS / "bom.jsonl"), load(CORPUS / "crlf.jsonl")
    assert [e.instruction for e in bom.examples] == [e.instruction for e in crlf.examples] == \
        ["Question 1?", "Question 2?", "Question 3?"]
    assert load(CORPUS / "crlf.json").examples[1].response == "two\r\nlines"
    quoted = load(CORPUS / "quoted_newlines.csv").examples
    assert quoted[0].instruction == "Write a poem, please"
    assert quoted[0].response == 'Roses are red,\nviolets are blue,\n"quoted" too'
    assert load(CORPUS / "excel_bom_crlf.csv").examples[1].response == "C2"


def test_fifty_megabyte_single_line(tmp_path):
    big = "word " * 10_000_000
    path = tmp_path / "one_line.jsonl"
    path.write_text(json.dumps({"instruction": "Summarise", "output": big}) + "\n")
    assert path.stat().st_size > 50_000_000
    result = load(path)
    assert len(result.examples) == 1 and len(result.examples[0].response) == len(big)
    cut = tmp_path / "one_line_cut.json"
    cut.write_text(json.dumps([{"instruction": "Summarise", "output": big}])[:-3])
    with pytest.raises(InputError, match=r"row 1, line 1, column \d+: invalid JSON: Unterminated string") as e:
        load(cut)
    assert len(str(e.value)) < 300  # the message never quotes the data


def test_a_million_tiny_rows(tmp_path):
    path = tmp_path / "tiny.jsonl"
    with path.open("w") as f:
        f.writelines(f'{{"prompt":"p{i}","completion":"c{i}"}}\n' for i in range(1_000_000))
    result = load(path)
    assert result.rows == len(result.examples) == 1_000_000
    assert result.examples[-1].meta["where"] == "line 1000000"


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_nested_columns(tmp_path):
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
             {"from": "human", "value": "Bye"}, {"from": "gpt", "value": "Bye!"}]
    good = _write_parquet(tmp_path / "conv.parquet", [{"id": "a", "conversations": turns},
                                                      {"id": "b", "conversations": turns[:2]}])
    result = load(good)
    assert (result.format, result.rows, len(result.examples)) == ("sharegpt", 2, 3)
    nested = _write_parquet(tmp_path / "nested.parquet", [
        {"instruction": "Q1", "output": {"text": "A1", "lang": "en"}},
        {"instruction": "Q2", "output": {"text": "A2", "lang": None}}])
    with pytest.raises(InputError, match=r"nested\.parquet, row 1: field 'output': expected text, got an object"):
        load(nested)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"truncated\.parquet: not a readable Parquet file"):
        load(truncated)


def test_unsupported_type_and_missing_file(tmp_path):
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ScarError, match=r"data\.txt: unsupported file type '\.txt'"):
        load(tmp_path / "data.txt")
    with pytest.raises(ScarError, match=r"nowhere\.json: no such file"):
        load(tmp_path / "nowhere.json")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scar_core", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})


def _assert_one_paragraph_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0], proc.stderr


@pytest.mark.parametrize("name", ["truncated_array.json", "really_a_zip.json", "no_header.csv", "latin1.json",
                                  "duplicate_ids.jsonl"])
def test_cli_refuses_bad_input_with_one_paragraph(tmp_path, tiny_checkpoint, name):
    path = CORPUS / name
    proc = _cli("score", str(path), "--out", str(tmp_path / "s.jsonl"), "--model", str(tiny_checkpoint))
    match = re.search(EXPECTED[name]["strict"], proc.stderr)
    _assert_one_paragraph_error(proc, name)
    assert match, proc.stderr
    assert not (tmp_path / "s.jsonl").exists()


def test_cli_lenient_scores_valid_rows_and_shows_hostile_data_inert(tmp_path, tiny_checkpoint):
    path = CORPUS / "hostile_role.jsonl"
    out = tmp_path / "s.jsonl"
    proc = _cli("score", str(path), "--lenient", "--out", str(out), "--model", str(tiny_checkpoint))
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 1
    assert "rejected: " in proc.stderr and "line 2: field 'conversations[1].from'" in proc.stderr
    assert "\\x1b[2J" in proc.stderr and "\\u202e" in proc.stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\u200b-\u200f]", proc.stderr)
    strict = _cli("score", str(path), "--out", str(out), "--model", str(tiny_checkpoint))
    _assert_one_paragraph_error(strict, "unknown role")
    assert "\x1b" not in strict.stderr and "\u202e" not in strict.stderr
