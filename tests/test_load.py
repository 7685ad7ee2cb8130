"""The loader's streaming readers: chunk boundaries, positions in messages, memory, field maps,
duplicate ids, terminal-safe messages, and property-based tests that no input crashes it."""
from __future__ import annotations

import csv
import io
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scar_core.errors import InputError, ScarError, terminal_text
from scar_core.formats import reader
from scar_core.load import LoadResult, load

CORPUS = Path(__file__).resolve().parent / "bad_input"
EXPECTED = json.loads((CORPUS / "EXPECTED.json").read_text())


def _outcome(path: Path, lenient: bool = False):
    try:
        r = load(path, lenient=lenient)
    except ScarError as e:
        return str(e)
    return [(e.id, e.meta["where"]) for e in r.examples], [(x.where, x.reason) for x in r.rejected]


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_tiny_chunks_give_the_same_rows_and_messages(monkeypatch, chunk):
    """Every .json file of the corpus reads the same when the decoder sees a few characters at a time."""
    names = sorted(n for n in EXPECTED if n.endswith(".json"))
    before = {(n, lenient): _outcome(CORPUS / n, lenient) for n in names for lenient in (False, True)}
    monkeypatch.setattr(reader, "CHUNK", chunk)
    after = {(n, lenient): _outcome(CORPUS / n, lenient) for n in names for lenient in (False, True)}
    assert after == before


def test_multibyte_text_and_numbers_across_chunk_boundaries(tmp_path, monkeypatch):
    rows = [{"instruction": f"Frage {i}: Größe? 日本語 🙂", "output": "Antwort", "n": 12345678901234567890 + i,
             "f": -1.5e-300} for i in range(50)]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False))
    monkeypatch.setattr(reader, "CHUNK", 7)
    result = load(path)
    assert [e.instruction for e in result.examples] == [r["instruction"] for r in rows]
    assert [e.meta["n"] for e in result.examples] == [r["n"] for r in rows]


def test_invalid_utf8_deep_in_a_big_json_file_is_located(tmp_path):
    row = json.dumps({"instruction": "Q", "output": "A" * 1000})
    head = "[\n" + ",\n".join([row] * 3000) + ",\n"
    path = tmp_path / "big.json"
    path.write_bytes(head.encode() + b'{"instruction": "Q", "output": "caf\xe9"}\n]')
    assert len(head) > reader.CHUNK
    with pytest.raises(InputError, match=rf"big\.json, line 3002: not valid UTF-8 \(b'\\xe9' at byte {len(head) + 35}\); "
                                         "it looks like Latin-1"):
        load(path)


def _peak_mib(path: Path) -> float:
    tracemalloc.start()
    try:
        result = load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.rows > 0
    return peak / 2**20


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_a_big_file_is_not_held_twice(tmp_path, suffix):
    """Peak memory stays near the size of the loaded text: reading bytes, then text, then rows
    (what a whole-file read does) would need about three times the file."""
    rows = [{"instruction": f"Q{i}", "input": "", "output": f"{i} " + "x" * 400_000} for i in range(50)]
    path = tmp_path / f"big{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    size = path.stat().st_size / 2**20
    assert _peak_mib(path) < 1.6 * size


def test_field_map_applies_to_csv_headers_and_rows(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nWhat?,That.\n")
    with pytest.raises(InputError, match="is not a header naming the fields"):
        load(path)
    result = load(path, field_map={"instruction": "question", "output": "answer"})
    assert (result.format, result.examples[0].response) == ("alpaca", "That.")


def test_duplicate_ids_only_count_accepted_rows(tmp_path):
    path = tmp_path / "ids.jsonl"
    rows = [{"id": 7, "instruction": "Q", "output": ""}, {"id": 7, "instruction": "Q", "output": "A"},
            {"id": "7", "instruction": "Q2", "output": "B"}, {"id": 7, "instruction": "Q3", "output": "C"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load(path, lenient=True)
    assert [e.meta["where"] for e in result.examples] == ["line 2", "line 3"]
    assert [(r.where, r.field) for r in result.rejected] == [("line 1", "output"), ("line 4", "id")]
    assert "line 2 has the same id" in result.rejected[1].reason


def test_chosen_format_names_the_missing_field(tmp_path):
    path = tmp_path / "pc.jsonl"
    path.write_text(json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(InputError, match=r"line 1: field 'completion': missing \(prompt_completion rows need"):
        load(path, fmt="prompt_completion")


def test_terminal_text_escapes_control_and_invisible_characters():
    hostile = "role '\x1b[31mred\x1b[0m' \u202eevil\u2066 zero\u200bwidth bell\x07 cr\r\nnext line"
    shown = terminal_text(hostile)
    assert shown == ("role '\\x1b[31mred\\x1b[0m' \\u202eevil\\u2066 zero\\u200bwidth bell\\x07 cr\\r\n"
                     "next line")
    assert terminal_text("plain text, ünïcödé 日本") == "plain text, ünïcödé 日本"


# --- property-based: nothing a file can hold makes the reader crash -------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = ["instruction", "input", "output", "prompt", "completion", "conversations", "messages", "from",
          "value", "role", "content", "id", "source"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=20)


def _survives(path: Path) -> None:
    """load() gives a LoadResult or a ScarError, in both modes, never anything else."""
    for lenient in (False, True):
        try:
            result = load(path, lenient=lenient)
        except ScarError as e:
            assert str(e).startswith(str(path))
        else:
            assert isinstance(result, LoadResult) and result.examples


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".json", ".jsonl", ".csv", ".parquet"]))
def test_random_bytes_never_crash(tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _survives(path)


@FUZZ
@given(value=json_values)
def test_random_json_never_crashes(tmp_path, value):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(value))
    _survives(path)


@FUZZ
@given(values=st.lists(json_values, min_size=1, max_size=6))
def test_random_json_lines_never_crash(tmp_path, values):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in values))
    _survives(path)


@FUZZ
@given(header=st.lists(st.sampled_from(FIELDS) | st.text(max_size=6), min_size=1, max_size=4),
       cells=st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=6))
def test_random_csv_never_crashes(tmp_path, header, cells):
    text = io.StringIO()
    csv.writer(text).writerows([header, *cells])
    path = tmp_path / "fuzz.csv"
    path.write_text(text.getvalue())
    _survives(path)
