"""Issue 27: degenerate responses (echoes of the prompt, empty answers, refusals) are flagged with a reason,
counted in the cleaning summary, and left out of cuts (echo, empty) or kept unless asked (refusal)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from scar_core.clean import clean, degenerate, leaves_out, left_out_kind
from scar_core.errors import ScarError
from scar_core.example import Example
from tests.test_clean import cli

SKY = "Explain why the sky is blue in two sentences."
SKY_ANSWER = ("Sunlight is scattered by the molecules of the air, and blue light, with its short wavelength, is "
              "scattered far more than red. So blue light reaches our eyes from every part of the sky.")
HEALTH = "Give three tips for staying healthy."
HEALTH_ANSWER = ("1. Eat a balanced diet with plenty of vegetables and fruit.\n2. Move for at least thirty minutes "
                 "a day.\n3. Sleep seven to nine hours a night.")
MONGOLIA = ("What is the capital of Mongolia?\n\nMongolia is a landlocked country in East Asia, bordered by Russia "
            "to the north and China to the south. It covers an area of 1,564,116 square kilometres, with a "
            "population of just 3.3 million. Ulaanbaatar is the capital and largest city, home to roughly half "
            "of the country's population.")
PASSAGE = ("Read the passage and explain what it says about the origin of the festival.\n\nThe lantern festival "
           "began in the Han dynasty, when the emperor ordered lanterns lit in the palace and the temples on the "
           "fifteenth night of the first month to honour the Buddha. Over the centuries the custom spread to "
           "every household and became a night of riddles, dancing and sweet rice balls.")
QUOTING = ("The passage traces the festival to an imperial order. In its words, \"the emperor ordered lanterns lit "
           "in the palace and the temples on the fifteenth night of the first month to honour the Buddha\". So "
           "the festival started as a religious rite at court, and only later, as the custom spread to ordinary "
           "households, did it turn into the popular celebration with riddles and rice balls we know today.")


def pair(instruction: str, response: str, context: list[dict] | None = None) -> Example:
    return Example(instruction=instruction, response=response, context=context or [])


def kinds(example: Example, **modes) -> list[str]:
    report = clean([example], dedup="none", lang="any", **modes)
    return [f["kind"] for f in report.flags[0]]


def only_flag(example: Example, **modes) -> dict:
    report = clean([example], dedup="none", lang="any", **modes)
    assert len(report.flags[0]) == 1, report.flags[0]
    return report.flags[0][0]


# --- what is not flagged --------------------------------------------------------------------------

@pytest.mark.parametrize("example", [
    pair(SKY, SKY_ANSWER),
    pair(HEALTH, HEALTH_ANSWER),
    pair("What is 2+2?", "4"),
    pair("Is the following sentence a question? 'Where are you going?'", "Yes."),
    pair("Which is a species of fish? Grass carp or Grass", "Grass carp"),
    pair("What is the capital of Kansas?", "Topeka is the capital of Kansas."),  # restates, but answers
    pair(MONGOLIA, "Ulaanbaatar is the capital of Mongolia."),  # taken from the passage, not the question
    pair(PASSAGE, QUOTING),  # a long answer quoting the prompt's passage
    pair("Correct the grammar of this sentence: I guess this was one of those inventions which is pretty obvious "
         "in hindsight, and I bet more than one person thought of it before.",
         "I guess this was one of those inventions that are pretty obvious in hindsight, and I bet more than one "
         "person thought of it before."),  # an edit of the data, not a repeat of the request
    pair("Add a comma to the sentence \"The man went to the store to buy food for his family\"",
         "The man went to the store, to buy food for his family."),  # the data of the request, edited
    pair("Please add the sources to this part \"the circular economy could cut global carbon emissions by 9.3 "
         "billion tons by 2050, as much as all transport emits today, says the Ellen MacArthur Foundation\"",
         "The circular economy could cut global carbon emissions by 9.3 billion tons by 2050, as much as all "
         "transport emits today, says the Ellen MacArthur Foundation (2019)."),
    pair("Use appropriate emojis for: cute cat, playful, soft", "🐱😺🐾🧶"),  # symbols are content
    pair("I will send you my notes in parts; reply only with 'Acknowledged.'\n\n" + PASSAGE, "Acknowledged."),
    pair("I am super tired.", "I'm sorry to hear that you're feeling tired. Try to get to bed an hour earlier "
                              "tonight and keep screens out of the bedroom."),
    pair("Fix the function.", "I apologize for the confusion. Here is the corrected function: it now returns the "
                              "sum instead of printing it."),
    pair("Write a line of dialogue that shows frustration.", "\"I can't believe I'm dealing with this again!\""),
])
def test_good_short_and_quoting_answers_are_not_flagged(example):
    assert kinds(example, refusals="drop") == []


def test_a_long_answer_that_declines_one_part_is_not_a_refusal():
    long = "I'm sorry, but I can't browse the web. " + "Here is what I know about the topic instead. " * 12
    assert degenerate.refusal(long) is None and kinds(pair("Summarise today's news.", long)) == []
    assert degenerate.refusal("I'm sorry, but I can't browse the web.") == "sorry, I can't"


# --- echo -----------------------------------------------------------------------------------------

def test_a_response_repeating_the_instruction_is_an_echo():
    flag = only_flag(pair(SKY, SKY))
    assert flag["kind"] == "echo" and flag["left_out"] is True
    assert flag["own_words"] == 0 and flag["words"] == 9 and flag["repeated"] == 1.0
    assert "0 of its 9 words are its own" in flag["reason"]
    assert kinds(pair(SKY, "Sure! Explain why the sky is blue in two sentences.")) == ["echo"]  # filler is not text
    assert kinds(pair(SKY, "In two sentences, explain why the sky is blue.")) == ["echo"]  # reordered
    assert kinds(pair(SKY, "Explain why the sky is blue")) == ["echo"]  # cut short
    assert kinds(pair(SKY, "The sky is blue.")) == []  # too little of the request to call it a repeat


def test_repeating_a_whole_multi_part_instruction_is_an_echo():
    instruction = "Explain why the sky is blue. Use two sentences and avoid jargon.\n\nAudience: children."
    flag = only_flag(pair(instruction, instruction))
    assert flag["kind"] == "echo" and flag["copied_from"] == "instruction"
    assert kinds(pair(instruction, SKY_ANSWER)) == []


def test_an_echo_of_an_earlier_user_turn_but_not_of_an_earlier_answer():
    turns = [{"role": "user", "content": SKY}, {"role": "assistant", "content": SKY_ANSWER}]
    flag = only_flag(pair("Please answer.", SKY, turns))
    assert flag["kind"] == "echo" and flag["copied_from"] == "earlier user turn 1"
    assert kinds(pair("Say that again, please.", SKY_ANSWER, turns)) == []  # repeating its own answer: not flagged


# --- empty ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("response", ["", "   \n\t", "...", "\u200b", "!!! ??", "```\n```", "\ufeff - *"])
def test_responses_without_letters_digits_or_symbols_are_empty(response):
    flag = only_flag(pair(HEALTH, response))
    assert flag["kind"] == "empty" and flag["left_out"] is True and "no letters" in flag["reason"]


# --- refusal --------------------------------------------------------------------------------------

@pytest.mark.parametrize("response, pattern", [
    ("I'm sorry, but I can't help with that.", "sorry, I can't"),
    ("I’m sorry, but I can’t help with that.", "sorry, I can't"),  # typographic apostrophes
    ("As an AI language model, I cannot browse the internet or see today's prices.", "as an AI, I can't"),
    ("I cannot provide instructions for that.", "I can't help"),
    ("Unfortunately, I am unable to access the link you provided.", "I can't help"),
    ("I apologize, but I don't have access to the articles you mentioned.", "I apologise, but I can't"),
    ("Sorry, the task involves creating a visual product. This type of task is beyond the capability of the "
     "model, so we cannot complete this task.", "beyond my capabilities"),
])
def test_refusals_are_flagged_and_kept_by_default(response, pattern):
    flag = only_flag(pair(HEALTH, response))
    assert flag["kind"] == "refusal" and flag["pattern"] == pattern
    assert flag["left_out"] is False and pattern in flag["reason"]
    assert only_flag(pair(HEALTH, response), refusals="drop")["left_out"] is True
    assert kinds(pair(HEALTH, response), refusals="none") == []


# --- the report, its counts and its options --------------------------------------------------------

ROWS = [pair(SKY, SKY_ANSWER), pair(SKY, SKY), pair(HEALTH, HEALTH_ANSWER),
        pair(HEALTH, "I'm sorry, but I can't help with that."), pair(HEALTH, " ... "), pair("What is 2+2?", "4")]


def test_counts_and_options_go_in_the_cleaning_summary():
    report = clean(ROWS, dedup="near", lang="en")
    summary = json.loads(json.dumps(report.summary()))
    counts, options = summary["counts"], summary["options"]
    assert (counts["echoes"], counts["empty"], counts["refusals"]) == (1, 1, 1)
    assert (counts["flagged"], counts["unflagged"], counts["left_out"]) == (3, 3, 2)
    assert (options["echoes"], options["empty"], options["refusals"]) == ("drop", "drop", "keep")
    assert options["degenerate_rules"]["echo_own_share"] == degenerate.OWN_SHARE
    assert list(report.rows("kept")) == [0, 2, 3, 5]  # the refusal is kept ...
    assert list(report.rows("flagged")) == [1, 3, 4]  # ... and shown as flagged
    assert list(report.rows("candidates")) == [0, 2, 3, 5]
    assert list(report.left_out) == [False, True, False, False, True, False]
    assert list(report.left_out_by) == [None, "echo", None, None, "empty", None]
    assert not report.off_language.any()

    dropped = clean(ROWS, dedup="near", lang="en", refusals="drop")
    assert list(dropped.rows("kept")) == [0, 2, 5] and dropped.counts()["left_out"] == 3
    assert list(dropped.left_out_by) == [None, "echo", None, "refusal", "empty", None]
    kept = clean(ROWS, dedup="near", lang="en", echoes="keep", empty="keep")
    assert list(kept.rows("kept")) == list(range(6)) and kept.counts()["flagged"] == 3
    off = clean(ROWS, dedup="near", lang="en", echoes="none", empty="none", refusals="none")
    assert off.counts()["flagged"] == 0 and "degenerate_rules" not in off.options
    with pytest.raises(ScarError, match="--refusals must be one of drop, keep, none"):
        clean(ROWS, refusals="maybe")


def test_a_duplicate_cluster_keeps_a_member_that_is_not_degenerate():
    answer, empty = pair(PASSAGE, "It began as a court rite in the Han dynasty."), pair(PASSAGE, "...")
    report = clean([empty, answer], dedup="near", lang="any", scores=[0.9, 0.1])  # the empty one scores higher
    assert report.flags[1] == []
    assert [f["kind"] for f in report.flags[0]] == ["near", "empty"]
    assert report.flags[0][0]["duplicate_of"] == answer.id
    kept = clean([empty, answer], dedup="near", lang="any", scores=[0.9, 0.1], empty="keep")
    assert [f["kind"] for f in kept.flags[1]] == ["near"]  # flagged but not left out: the best score wins again


def test_leaves_out_reads_a_rows_flags_as_listed_or_as_stored():
    assert leaves_out([{"kind": "language", "language": "de"}])
    assert leaves_out({"echo": {"kind": "echo", "left_out": True}})
    assert not leaves_out({"refusal": {"kind": "refusal", "left_out": False}})
    assert leaves_out({"refusal": {"kind": "refusal", "left_out": True}})
    assert not leaves_out([{"kind": "near", "duplicate_of": "x", "similarity": 0.8}]) and not leaves_out({})
    assert left_out_kind({"echo": {"kind": "echo", "left_out": True}, "language": {"language": "de"}}) == "language"
    assert left_out_kind([{"kind": "near"}, {"kind": "empty", "left_out": True}]) == "empty"


# --- command line ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    rows = [{"instruction": e.instruction, "input": "", "output": e.response} for e in ROWS]
    path = tmp_path_factory.mktemp("degenerate") / "pool.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def ranked(out: Path) -> list[str]:
    return [json.loads(line)["output"] for line in out.read_text(encoding="utf-8").splitlines()]


def test_rank_leaves_echoes_and_empty_out_and_keeps_refusals(pool, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "kept.jsonl"
    model = ("--model", str(tiny_checkpoint), "--precision", "fp32", "--out", str(out), "--ratio", "1")
    code, err = cli(capsys, "rank", str(pool), *model)
    assert code == 0, err
    assert "1 echoes of the prompt, 1 empty, 1 refusals kept" in err
    outputs = ranked(out)
    assert sorted(outputs) == sorted([SKY_ANSWER, HEALTH_ANSWER, "I'm sorry, but I can't help with that.", "4"])
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    counts = manifest["cleaning"]["counts"]
    assert (counts["echoes"], counts["empty"], counts["refusals"], counts["left_out"]) == (1, 1, 1, 2)
    assert manifest["cleaning"]["options"]["refusals"] == "keep"
    assert manifest["selection"]["pool"] == 4

    code, err = cli(capsys, "rank", str(pool), *model, "--refusals", "drop")
    assert code == 0, err
    assert sorted(ranked(out)) == sorted([SKY_ANSWER, HEALTH_ANSWER, "4"])

    code, err = cli(capsys, "rank", str(pool), *model, "--echoes", "keep")
    assert code == 0, err
    assert len(ranked(out)) == 5 and SKY in ranked(out) and " ... " not in ranked(out)  # flagged, but kept

    code, err = cli(capsys, "rank", str(pool), *model, "--empty", "none", "--echoes", "none")
    assert code == 0, err
    assert len(ranked(out)) == 6 and "0 echoes of the prompt, 0 empty" in err

    code, err = cli(capsys, "rank", str(pool), *model, "--keep-flagged", "--refusals", "drop")
    assert code == 0, err
    assert len(ranked(out)) == 6

    with pytest.raises(SystemExit):
        cli(capsys, "rank", str(pool), *model, "--echoes", "sometimes")
    assert "argument --echoes: invalid choice: 'sometimes'" in capsys.readouterr().err


def test_score_writes_each_flag_with_its_reason(pool, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "scores.jsonl"
    code, err = cli(capsys, "score", str(pool), "--model", str(tiny_checkpoint), "--out", str(out),
                    "--precision", "fp32")
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [[f["kind"] for f in line["flags"]] for line in lines] == [[], ["echo"], [], ["refusal"], ["empty"], []]
    assert all(f["reason"] for line in lines for f in line["flags"])
