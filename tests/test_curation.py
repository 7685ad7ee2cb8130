"""The selection rule (cuts with quotas, overrides and cleaning) and the app's helpers in scar_core, safe export names, inert text,
file previews and uploads."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scar_core.display import markdown_escape, snippet, visible
from scar_core.clean import duplicate_of
from scar_core.errors import ScarError
from scar_core.export import export_target, safe_filename
from scar_core.intake import field_map, preview, save_upload
from scar_core.select import cut, rank_and_percentile, select, split_stats

SCORES = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5])
SOURCES = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)


def test_plain_cut_is_select_without_cleaning_quotas_or_labels():
    for rule, value, kept in (("ratio", 0.5, [0, 1, 2]), ("topk", 4, [0, 1, 2, 3]), ("threshold", 2.5, [0, 1, 2])):
        assert select(SCORES, rule, value).kept.tolist() == cut(SCORES, **{rule: value}).kept.tolist() == kept


def test_quotas_cap_a_source_and_fill_from_the_others():
    chosen = select(SCORES, "topk", 3, sources=SOURCES, quotas={"a": 1})
    assert chosen.kept.tolist() == [0, 3, 4] and chosen.quota_skipped == 2
    assert chosen.threshold == 1.0


def test_labels_force_rows_in_and_out_and_are_counted():
    labels = np.array(["drop", None, None, None, "keep", "flag"], dtype=object)
    chosen = select(SCORES, "ratio", 0.5, labels=labels)
    assert chosen.kept.tolist() == [1, 2, 4]
    assert (chosen.forced_in, chosen.forced_out) == (1, 1)
    assert chosen.params()["overrides"] == {"forced_in": 1, "forced_out": 1}


def test_a_label_policy_turns_verdicts_into_one_label_per_row():
    from scar_core.labels import Verdict, resolve

    verdicts = [Verdict("a", "ann", "keep"), Verdict("a", "bob", "keep"),                       # unanimous
                Verdict("b", "ann", "keep"), Verdict("b", "bob", "drop"), Verdict("b", "cy", "drop"),  # majority
                Verdict("c", "ann", "keep"), Verdict("c", "bob", "drop"),                       # a tie
                Verdict("d", "ann", "keep"), Verdict("d", "bob", "drop"), Verdict("d", "lea", "flag", True)]
    majority = resolve(verdicts)
    assert majority.decided == {"a": "keep", "b": "drop", "d": "flag"}
    assert majority.step == {"a": "unanimous", "b": "majority", "c": "unresolved", "d": "adjudicated"}
    assert majority.counts() == {"adjudicated": 1, "unanimous": 1, "majority": 1, "unresolved": 1}
    assert sorted(k for k, votes in majority.votes.items() if len(votes) > 1) == ["b", "c", "d"]
    assert [majority.summary(k) for k in "abcdz"] == ["keep", "2 drop / 1 keep", "1 drop / 1 keep",
                                                      "→ flag (lead; 1 drop / 1 keep)", ""]
    unanimous = resolve(verdicts, "lead-then-unanimous")
    assert unanimous.decided == {"a": "keep", "d": "flag"} and unanimous.step["b"] == "unresolved"
    assert resolve(verdicts[::-1]).verdicts_sha256 == majority.verdicts_sha256  # the order does not matter
    assert resolve(verdicts[:-1]).verdicts_sha256 != majority.verdicts_sha256
    with pytest.raises(ScarError, match="unknown label policy"):
        resolve(verdicts, "loudest")
    # the labels a selection applies are the policy's: an unresolved row is no override
    labels = np.array([majority.decided.get(k) for k in "abcdef"], dtype=object)
    chosen = select(SCORES, "ratio", 0.5, labels=labels)
    assert chosen.kept.tolist() == [0, 2] and (chosen.forced_in, chosen.forced_out) == (0, 1)


def test_a_labels_file_holds_verdicts_per_annotator(tmp_path):
    from scar_core.errors import InputError
    from scar_core.labels import Verdict, read_labels

    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "x", "label": "keep"}, {"id": "x", "label": "drop", "annotator": "ann"},
        {"id": "y", "label": "keep", "annotator": "ann"}, {"id": "y", "label": "flag", "annotator": "ann"},
        {"id": "y", "label": "drop", "annotator": "lead", "adjudication": True}]))
    assert read_labels(path) == [Verdict("x", "file", "keep"), Verdict("x", "ann", "drop"),
                                 Verdict("y", "ann", "flag"), Verdict("y", "lead", "drop", True)]
    table = tmp_path / "labels.csv"
    table.write_text("id,label,annotator,adjudication\nx,keep,ann,false\nx,drop,lead,true\n")
    assert read_labels(table) == [Verdict("x", "ann", "keep"), Verdict("x", "lead", "drop", True)]
    for bad, field in (({"id": "x", "label": "maybe"}, "label"), ({"id": "x", "label": "keep", "annotator": " "}, "annotator"),
                       ({"id": "x", "label": "keep", "adjudication": "perhaps"}, "adjudication")):
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(InputError) as refused:
            read_labels(path)
        assert refused.value.field == field and refused.value.where


def test_bad_rules_are_refused():
    for rule, value in (("ratio", 0.0), ("topk", 1.5), ("threshold", float("nan")), ("best", 1)):
        with pytest.raises(ScarError):
            select(SCORES, rule, value)


def test_rank_percentile_and_split_stats():
    assert rank_and_percentile(SCORES, [5.0, 0.5]) == [(1, 100.0), (6, 100 / 6)]
    table = split_stats(np.array([True, False, True]), np.array([10, 20, 30]))
    assert table.loc["kept", "rows"] == 2 and table.loc["kept", "response words"] == 40


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "passwd.jsonl"), ("..", "export.jsonl"), ("a\\b/c.jsonl", "c.jsonl"),
    ("\u202egnp.jsonl", "gnp.jsonl"), ("zero\u200bwidth", "zerowidth.jsonl"), (".hidden", "hidden.jsonl"),
    ("résumé data", "r_sum_data.jsonl")])
def test_export_names_are_sanitised(name, expected, tmp_path):
    assert safe_filename(name) == expected
    assert export_target(tmp_path, name).parent == tmp_path.resolve()


def test_text_from_data_is_made_visible_and_markdown_inert():
    hostile = "a\u200bb \u202eevil \x1b[31mred ![x](http://evil/x.png) <b>hi</b>"
    shown = visible(hostile)
    assert "\u200b" not in shown and "\u202e" not in shown and "\x1b" not in shown and "\\u202e" in shown
    escaped = markdown_escape(hostile)
    assert "](" not in escaped and "<b>" not in escaped and "\\!\\[x\\]" in escaped
    assert snippet("line one\nline two " + "x" * 300, 20).endswith("…") and "\n" not in snippet("a\nb")


def test_preview_reads_only_the_first_rows_and_maps_fields(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(50)) + "{bad\n")
    seen = preview(path, limit=5)
    assert len(seen.rows) == 5 and seen.detected is None and seen.fields == ["question", "answer"]
    assert field_map("alpaca", {"instruction": "question", "output": "answer", "input": ""}) == \
        {"instruction": "question", "output": "answer"}
    assert field_map("alpaca", {"instruction": "instruction"}) is None


def test_uploads_are_kept_under_a_content_folder_with_a_safe_name(tmp_path):
    first = save_upload(tmp_path, "../../x.jsonl", b'{"instruction": "a", "output": "b"}\n')
    assert first.is_relative_to(tmp_path) and first.name == "x.jsonl"
    assert save_upload(tmp_path, "x.jsonl", b"other\n") != first
    with pytest.raises(ScarError):
        save_upload(tmp_path, "x.exe", b"MZ")


def test_a_duplicate_cluster_keeps_its_best_scored_copy():
    # Two copies of one pair scored 0.1 and 0.9, plus one other row: the 0.9 copy stays (CLI and app alike).
    chosen = select(np.array([0.1, 0.9, 0.5]), "ratio", 1.0, clusters=np.array([0, 0, -1]))
    assert chosen.kept.tolist() == [1, 2] and chosen.left_out["duplicate"] == 1
    assert select(np.array([0.1, 0.9, 0.5]), "ratio", 1.0, clusters=np.array([0, 0, -1]),
                  keep_flagged=True).kept.tolist() == [1, 2, 0]
    # A member flagged for language gives way to the others; an unscored one ranks last.
    keepers = duplicate_of(np.array([0, 0, 0, -1]), np.array([0.9, np.nan, 0.2, 1.0]),
                           np.array([True, False, False, False]))
    assert keepers.tolist() == [2, 2, -1, -1]
