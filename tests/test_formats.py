"""Row shapes: detection, conversion to Examples, the multi-turn policy, and writing back."""
import json

import pytest

from scar_core import formats
from scar_core.example import Example
from scar_core.export import to_jsonl_lines
from scar_core.formats import RowError
from scar_core.load import load


def test_detects_each_shape():
    assert formats.detect({"instruction": "a", "input": "", "output": "b"}) == "alpaca"
    assert formats.detect({"conversations": []}) == "sharegpt"
    assert formats.detect({"messages": []}) == "messages"
    assert formats.detect({"prompt": "a", "completion": "b"}) == "prompt_completion"
    assert formats.detect({"question": "a"}) is None


def test_alpaca_joins_input_to_instruction():
    [ex] = formats.shape("alpaca").to_examples({"instruction": "Translate", "input": "Hallo", "output": "Hello"})
    assert ex.instruction == "Translate\n\nHallo" and ex.response == "Hello"


def test_sharegpt_every_assistant_turn_is_a_pair_with_history():
    row = {"id": "c1", "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]}
    first, second = formats.shape("sharegpt").to_examples(row)
    assert (first.instruction, first.response, first.context) == ("Hi", "Hello!", [])
    assert second.instruction == "What is 2+2?" and second.response == "4"
    assert second.context == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert second.system == "Be brief." and second.meta["id"] == "c1"
    assert second.ranker_instruction().endswith("User: What is 2+2?")
    assert second.ranker_instruction().startswith("User: Hi")


def test_leading_assistant_turn_is_context_only():
    row = {"conversations": [{"from": "gpt", "value": "...continued"}, {"from": "human", "value": "More"},
                             {"from": "gpt", "value": "Sure."}]}
    [ex] = formats.shape("sharegpt").to_examples(row)
    assert ex.instruction == "More" and ex.context == [{"role": "assistant", "content": "...continued"}]


@pytest.mark.parametrize("turns, message", [
    ([{"from": "human", "value": "a"}], "no assistant turn"),
    ([{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, {"from": "gpt", "value": "c"}],
     "two user turns in a row"),
    ([{"from": "narrator", "value": "a"}], "unknown role"),
    ([{"from": "human", "value": "a"}, {"from": "gpt", "value": "  "}], "empty assistant turn"),
])
def test_bad_conversations_are_rejected(turns, message):
    with pytest.raises(RowError, match=message):
        formats.shape("sharegpt").to_examples({"conversations": turns})


def test_messages_keep_system_as_metadata():
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                        {"role": "assistant", "content": "A"}]}
    [ex] = formats.shape("messages").to_examples(row)
    assert (ex.system, ex.instruction, ex.response) == ("S", "U", "A")


def test_ids_are_stable_and_content_based():
    a = Example("Say hi", "hi")
    assert a.id == Example("Say hi", "hi").id
    assert a.id != Example("Say hi", "hello").id
    assert a.id != Example("Say hi", "hi", system="pirate").id


@pytest.mark.parametrize("fmt", list(formats.SHAPES))
def test_written_rows_load_back_to_the_same_examples(tmp_path, fmt):
    examples = [Example("What is 2+2?", "4"),
                Example("And 3+3?", "6", context=[{"role": "user", "content": "What is 2+2?"},
                                                  {"role": "assistant", "content": "4"}])]
    if fmt in ("alpaca", "prompt_completion"):
        examples = examples[:1]
    path = tmp_path / "out.jsonl"
    path.write_text("".join(to_jsonl_lines(examples, fmt, scores=[1.5] * len(examples))))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["score"] == 1.5 for r in rows)
    loaded = load(path).examples
    assert [e.id for e in loaded][-len(examples):] == [e.id for e in examples]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_every_file_type_loads(tmp_path, suffix):
    import pandas as pd

    rows = [{"instruction": "Name a colour", "input": "", "output": "Blue"},
            {"instruction": "Say hi", "input": "to Bob", "output": "Hi Bob"}]
    path = tmp_path / f"pool{suffix}"
    frame = pd.DataFrame(rows)
    {".json": lambda: path.write_text(json.dumps(rows)),
     ".jsonl": lambda: path.write_text("\n".join(json.dumps(r) for r in rows)),
     ".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    result = load(path)
    assert result.format == "alpaca" and result.rows == 2
    assert [e.instruction for e in result.examples] == ["Name a colour", "Say hi\n\nto Bob"]
    assert all(e.source == "pool" for e in result.examples)
