"""The Explore page through streamlit's AppTest: the table, the maps, the example view and labelling.

Browser events AppTest has no helper for (a row picked in the table, a lasso on a map) are sent as the
widget state the browser would send (`send`)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from db import labels, runs
from scar_core.jobs import labelling
from tests.conftest import fragment_names, score_file

APP = str(Path(__file__).resolve().parent.parent / "app.py")
HOSTILE = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> '
           '[click](javascript:window.__pwned=3) ![x](http://evil.example.com/x.png) '
           '\x1b[31mred\x1b[0m zero\u200bwidth \u202eevil')
ROWS = [{"instruction": f"Question {i}: how do I do task {i}?",
         "output": (f"Sure! Here is how:\n\n1. First step of {i}.\n2. Second step.\n" if i % 2 else
                    f"You could try doing it slowly, I think. It took me {i} days." + (HOSTILE if i == 0 else "")),
         "source": "web" if i % 3 else "chat"} for i in range(12)]


@pytest.fixture
def scored(store, tmp_path, tiny_checkpoint):
    """Twelve pairs scored by the tiny ranker and mapped, in this process (the jobs the workers run)."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return score_file(store, path, tiny_checkpoint, mapped=True)


def explore() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    return at


def send(at: AppTest, element, value: dict) -> AppTest:
    """Rerun as after a browser event on `element` (a table's row selection, a map's box or lasso)."""
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=element.proto.id, string_value=json.dumps(value)))
    return at._run(states)


def lasso(at: AppTest, chart: int, ids: list[int]) -> AppTest:
    points = [{"customdata": i, "point_index": k} for k, i in enumerate(ids)]
    return send(at, at.get("plotly_chart")[chart],
                {"selection": {"points": points, "point_indices": list(range(len(ids))), "box": [],
                               "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}})


def table(at: AppTest):
    return at.dataframe[0].value


def frame(at: AppTest, *columns: str):
    """The first table on the page with these columns."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def shown_text(at: AppTest) -> str:
    """The example view's rendered texts (st.html bodies) and raw texts (st.code) together."""
    return " ".join([h.proto.body for h in at.get("html")] + [c.value for c in at.code])


def texts(elements) -> list[str]:
    """Element values; messages are markdown-escaped by the app, so the escapes are removed here."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def test_a_picked_row_survives_the_table_shrinking(store, scored):
    """Found 1: pick the 5th row, then filter so one row is left: no IndexError, the row left is shown."""
    at = explore()
    at = send(at, at.dataframe[0], {"selection": {"rows": [4], "columns": []}})
    assert not at.exception
    kept = runs.results_page(store, scored.id, limit=12)[7]
    labelling.label(store, scored.id, [kept["example_id"]], "keep", "ann")
    at.selectbox(key="label_filter").set_value("keep").run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert len(table(at)) == 1
    assert kept["instruction"] in shown_text(at)


def test_clearing_the_map_selection_unfilters_the_table(store, scored):
    """Found 2: a lasso filters the table; "Clear map selection" must unfilter it at once."""
    at = explore()
    ids = runs.run_scores(store, scored.id)[0][:3].tolist()
    at = lasso(at, 0, ids)
    assert len(table(at)) == 3
    next(b for b in at.button if b.label == "Clear map selection").click().run()
    assert not at.exception, at.exception
    assert len(table(at)) == 12
    assert not any(b.label == "Clear map selection" for b in at.button)


def test_colour_by_label_names_the_unlabelled_and_hover_shows_the_text(store, scored):
    """Found 8: no "nan" category, labelled points drawn larger and on top; hover shows the texts and score."""
    first, second = runs.results_page(store, scored.id, limit=2)
    labelling.label(store, scored.id, [first["example_id"]], "drop", "ann")
    labelling.label(store, scored.id, [second["example_id"]], "keep", "ann")  # ann and bob disagree: a conflict
    labelling.label(store, scored.id, [second["example_id"]], "drop", "bob")
    at = explore()
    at.radio(key="map_colour").set_value("label").run()
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = {t["name"]: t for t in figure["data"]}
    assert "nan" not in " ".join(traces) and "(none)" not in traces
    assert set(traces) == {"unlabelled", "drop", "conflict"}
    assert points_of(traces["conflict"]) == [second["example_id"]]
    assert points_of(traces["drop"]) == [first["example_id"]]
    assert figure["data"][-1]["name"] == "drop"  # drawn last: on top
    assert traces["drop"]["marker"]["size"] > traces["unlabelled"]["marker"]["size"]
    hover = " ".join(str(t.get("hovertext")) for t in figure["data"])
    assert "Question 1" in hover or "Question 0" in hover
    assert f"{first['score']:.3f}" in hover
    assert "id " not in hover


def points_of(trace: dict) -> list[int]:
    """The example ids a map trace draws (plotly sends arrays as typed base64 data)."""
    import base64

    import numpy as np

    data = trace["customdata"]
    if isinstance(data, dict):
        data = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return [int(i) for i in data]


def best_first(store, run) -> list[dict]:
    return runs.results_page(store, run.id, limit=12)


def named(at: AppTest, name: str = "ann") -> AppTest:
    at.session_state["annotator"] = name  # the sidebar name (AppTest drops the sidebar after switch_page)
    return at.run()


def test_keys_label_save_and_move_on_without_carrying_the_note_over(store, scored):
    at = named(explore())
    shortcuts = {b.key: b.proto.shortcut for b in at.button if b.proto.shortcut}
    assert shortcuts == {"label_keep": "k", "label_drop": "d", "label_flag": "f", "previous": "p", "next": "j",
                         "next_unlabelled": "n"}
    ordered = best_first(store, scored)
    first, second = ordered[0]["example_id"], ordered[1]["example_id"]
    at.text_area(key=f"note_{first}").set_value("list-like")
    at.button(key="label_drop").click().run()
    assert [(x.label, x.note) for x in labels.labels_for(store, [first])] == [("drop", "list-like")]
    assert at.text_area(key=f"note_{second}").value == ""  # the next example starts blank
    assert ordered[1]["instruction"] in shown_text(at)
    at.button(key="label_keep").click().run()  # no note typed: none saved
    assert [(x.label, x.note) for x in labels.labels_for(store, [second])] == [("keep", None)]
    at.button(key="previous").click().run()
    assert ordered[1]["instruction"] in shown_text(at)
    # Undo comes from the store: another session of ann's offers it, bob's does not
    assert named(explore()).button(key="undo").label == "Undo: labelled 1 example keep"
    assert not any(b.key == "undo" for b in named(explore(), "bob").button)
    assert at.button(key="undo").label == "Undo: labelled 1 example keep"
    at.button(key="undo").click().run()  # undoes the last save only
    assert labels.labels_for(store, [second]) == [] and len(labels.labels_for(store, [first])) == 1
    assert any(m == "Undone: labelled 1 example keep (1 reverted)." for m in texts(at.info))
    assert at.button(key="undo").label == "Undo: labelled 1 example drop"  # the earlier save is next
    at.button(key="previous").click().run()
    at.button(key="next_unlabelled").click().run()  # skips nothing: the second is unlabelled again
    assert ordered[1]["instruction"] in shown_text(at)
    assert not at.exception, at.exception


def test_keys_arriving_together_save_nothing_and_say_so(store, scored):
    """Two keys pressed faster than the page redraws can reach the server as one rerun, whose callbacks
    Streamlit runs in widget order, not the order pressed: none of them may act."""
    at = named(explore())
    ordered = best_first(store, scored)
    first = ordered[0]["example_id"]
    at.button(key="label_drop").click()
    at.button(key="label_keep").click()
    at.run()
    assert labels.run_annotations(store, scored.id) == []
    assert "K and D arrived together" in " ".join(texts(at.info))
    assert ordered[0]["instruction"] in shown_text(at)  # still on the first example
    at.button(key="label_keep").click().run()  # pressed again, alone: it acts
    assert [(x[0], x[2]) for x in labels.run_annotations(store, scored.id)] == [(first, "keep")]
    at.button(key="undo").click()
    at.button(key="next").click()
    at.run()
    assert len(labels.run_annotations(store, scored.id)) == 1  # U and J together: neither
    assert "J and U arrived together" in " ".join(texts(at.info))


def test_labels_need_a_name(store, scored):
    at = explore()
    at.button(key="label_keep").click().run()
    assert any("Set your name" in m for m in texts(at.info))
    assert labels.run_annotations(store, scored.id) == []


def test_bulk_label_a_lasso_with_confirmation_then_undo(store, scored):
    ids = runs.run_scores(store, scored.id)[0][:4].tolist()
    labelling.label(store, scored.id, [ids[0]], "keep", "ann", "mine before")
    labelling.label(store, scored.id, [ids[1]], "flag", "other")
    at = lasso(named(explore()), 0, ids)
    # the count is what would change: ann gave ids[0] keep already
    assert at.button(key="bulk_start").label == "Label 3 as keep…"
    at.button(key="bulk_start").click().run()
    at.selectbox(key="bulk_label").set_value("drop").run()
    assert at.button(key="bulk_start").label == "Label 4 as drop…"
    at.button(key="bulk_start").click().run()
    assert any("Label 4 examples as drop" in w for w in texts(at.warning))
    assert {x.label for x in labels.labels_for(store, ids) if x.annotator == "ann"} == {"keep"}  # not yet
    at.button(key="bulk_confirm").click().run()
    mine = {x.example_id: x.label for x in labels.labels_for(store, ids) if x.annotator == "ann"}
    assert mine == dict.fromkeys(ids, "drop")
    assert at.button(key="bulk_start").label == "Label 0 as drop…" and at.button(key="bulk_start").disabled
    assert at.button(key="undo").label == "Undo: labelled 4 examples drop"
    at.button(key="undo").click().run()
    assert any(m == "Undone: labelled 4 examples drop (4 reverted)." for m in texts(at.info))
    # sorted: an undo stamps the verdict it puts back with the undo's time (the old restore_labels put
    # back the original time too), so "newest first" no longer lists ann's restored keep last
    assert sorted((x.example_id, x.label, x.note, x.annotator) for x in labels.labels_for(store, ids)) == \
        sorted([(ids[1], "flag", None, "other"), (ids[0], "keep", "mine before", "ann")])
    assert not at.exception, at.exception


def test_the_bulk_count_is_what_changes_when_my_verdict_has_a_note(store, scored):
    """A bulk verdict leaves an example carrying it already alone, note and all, and counts it so."""
    ids = runs.run_scores(store, scored.id)[0][:4].tolist()
    labelling.label(store, scored.id, [ids[0]], "keep", "ann", "mine before")
    at = lasso(named(explore()), 0, ids)
    said = int(at.button(key="bulk_start").label.split()[1])
    at.button(key="bulk_start").click().run()
    at.button(key="bulk_confirm").click().run()
    assert labels.last_action(store, scored.id, "ann").count == said == 3
    assert [(x.label, x.note) for x in labels.labels_for(store, [ids[0]])] == [("keep", "mine before")]


def test_bulk_labels_act_on_exactly_the_rows_the_table_lists(store, scored):
    """A lasso and a filter together: the bulk action labels their intersection, no more."""
    ordered = best_first(store, scored)
    picked = [r["example_id"] for r in ordered[:8]]
    at = lasso(named(explore()), 0, picked)
    at.selectbox(key="source_filter").set_value("chat").run()
    listed = table(at)
    chat = [r["example_id"] for r in ordered[:8] if r["source"] == "chat"]
    assert 0 < len(chat) < 8 and len(listed) == len(chat)
    assert at.button(key="bulk_start").label == f"Label {len(chat)} as keep…"
    at.button(key="bulk_start").click().run()
    at.button(key="bulk_confirm").click().run()
    assert labels.labelled_by(store, scored.id, "ann") == set(chat)
    assert not at.exception, at.exception


def test_review_queue_leaves_out_what_i_labelled(store, scored):
    ordered = [r["example_id"] for r in best_first(store, scored)]
    labelling.label(store, scored.id, [ordered[0]], "keep", "ann")
    labelling.label(store, scored.id, [ordered[1]], "keep", "other")
    at = named(explore())
    at.selectbox(key="sort").set_value("queue_best").run()
    assert len(table(at)) == 11 and table(at)["open"].tolist()[0] == "▶"
    assert table(at)["rank"].tolist()[:2] == [2, 3]
    at.selectbox(key="sort").set_value("queue_random").run()
    shuffled = table(at)["rank"].tolist()
    assert sorted(shuffled) == list(range(2, 13)) and shuffled != sorted(shuffled)
    at.button(key="label_flag").click().run()  # the queue shrinks; the rest keeps its order
    assert table(at)["rank"].tolist() == shuffled[1:]
    assert not at.exception, at.exception


def test_agreement_between_two_annotators(store, scored):
    ids = runs.run_scores(store, scored.id)[0][:4].tolist()
    for example_id, a, b in zip(ids, ["keep", "drop", "drop", "keep"], ["keep", "keep", "drop", "keep"]):
        labelling.label(store, scored.id, [example_id], a, "ann")
        labelling.label(store, scored.id, [example_id], b, "bob")
    at = explore()
    shown = frame(at, "Cohen's kappa")
    assert shown.to_dict("records") == [{"annotators": "ann · bob", "both labelled": 4, "same label": "75%",
                                         "Cohen's kappa": "0.50"}]


def test_conflicts_are_listed_shown_and_decided_by_a_lead(store, scored):
    ids = runs.run_scores(store, scored.id)[0][:3].tolist()
    for example_id, a, b in zip(ids, ["keep", "drop", "flag"], ["keep", "keep", "drop"]):
        labelling.label(store, scored.id, [example_id], a, "ann")
        labelling.label(store, scored.id, [example_id], b, "bob")
    at = named(explore(), "lea")
    at.selectbox(key="label_filter").set_value("conflict").run()
    shown = table(at)
    assert len(shown) == 2 and set(shown["label"]) == {"1 drop / 1 keep", "1 drop / 1 flag"}
    at.selectbox(key="label_filter").set_value("keep").run()
    assert table(at)["label"].tolist() == ["keep"]
    at.selectbox(key="label_filter").set_value("(any)").run()
    at.selectbox(key="sort").set_value("conflicts").run()
    queue = table(at)
    assert len(queue) == 2 and queue["open"].tolist()[0] == "▶"
    opened_first = labelling.label_filter(labelling.resolution(store, scored.id), "conflict", [])
    at.button(key="decide_keep").click().run()  # the lead's decision on the open conflict
    decided = labelling.resolution(store, scored.id)
    settled = [i for i in opened_first if decided.step[i] == "adjudicated"]
    assert len(settled) == 1 and decided.decided[settled[0]] == "keep"
    assert decided.summary(settled[0]).startswith("→ keep (lead; 1 drop / 1 ")
    assert len(table(at)) == 1  # the conflict queue shrinks
    # the adjudication leaves the annotators' own verdicts as they were
    assert {(x.annotator, x.label) for x in labels.labels_for(store, settled)} == \
        {("ann", "drop" if settled[0] == ids[1] else "flag"), ("bob", "keep" if settled[0] == ids[1] else "drop")}
    assert not at.exception, at.exception


def test_example_view_renders_markdown_inert_and_raw_on_request(store, scored, tmp_path):
    at = explore()
    at.text_input(key="search").set_value("Question 1:").run()
    body = shown_text(at)
    assert "<ol>" in body and "<li>First step of 1.</li>" in body
    diagnostics = frame(at, "percentile", "meaning")
    assert {"figure", "value", "median", "percentile", "meaning"} <= set(diagnostics)
    assert "words" in diagnostics["figure"].tolist() and diagnostics["percentile"].between(0, 100).all()
    at.toggle(key="raw_text").set_value(True).run()
    assert any(c.value.startswith("Sure! Here is how:\n\n1. First step of 1.") for c in at.code)
    at.text_input(key="search").set_value("Question 0:").run()  # hostile markup: shown literally, never run
    raw = next(c.value for c in at.code if "days." in c.value)
    assert raw.endswith('days.<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> '
                        "[click](javascript:window.__pwned=3) ![x](http://evil.example.com/x.png) "
                        "\\x1b[31mred\\x1b[0m zero\\u200bwidth \\u202eevil")
    at.toggle(key="raw_text").set_value(False).run()
    rendered = shown_text(at)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in rendered and "[image: x]" in rendered
    assert "<script" not in rendered and "<img" not in rendered and "<a " not in rendered
    assert "evil.example.com" not in rendered  # the image is its alt text: nothing to fetch
    assert "\\u202e" in rendered and "\u202e" not in rendered and "\x1b" not in rendered
    assert not at.exception, at.exception


def test_a_lasso_on_one_map_highlights_the_other_and_a_click_opens_a_point(store, scored):
    ordered = best_first(store, scored)
    at = lasso(explore(), 0, [r["example_id"] for r in ordered[:3]])
    other = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert [t["name"] for t in other["data"]][-1] == "picked on the other map (3)"
    assert len(table(at)) == 3
    at = lasso(at, 1, [ordered[5]["example_id"]])  # one point: opened, the table stays as it was
    assert len(table(at)) == 3 and ordered[5]["instruction"] in shown_text(at)
    assert not at.exception, at.exception


def test_the_labelling_fragment_keeps_its_name_whatever_the_maps_section_draws(store, scored, monkeypatch):
    """Streamlit names a fragment by its place on the page and drops a key press aimed at a name the last
    run did not draw. The maps section draws more or fewer elements (a map selection adds buttons, colour
    by selection a caption, a map job its progress): the labelling fragment below it must keep its name,
    or K pressed while the maps redraw is lost with nothing said (seen in CI: test_browser_team)."""
    named = fragment_names(monkeypatch, "ranked_examples")["ranked_examples"]
    ordered = best_first(store, scored)
    at = explore()
    at = lasso(at, 0, [r["example_id"] for r in ordered[:3]])
    assert at.button(key="clear_map")  # the maps section now draws more
    at.radio(key="map_colour").set_value("selection").run()
    assert not at.exception, at.exception
    assert len(named) == 3 and len(set(named)) == 1  # drawn at each of the three runs, under one name


def test_agreement_and_kappa_by_hand():
    from scar_core.labels import agreement

    rows = [(1, "a", "keep"), (2, "a", "drop"), (3, "a", "drop"), (1, "b", "keep"), (2, "b", "keep"),
            (3, "b", "drop"), (9, "c", "flag")]
    (pair,) = agreement(rows)  # c shares no example: no pair
    # observed 2/3; chance: a keeps 1/3, b keeps 2/3 -> 1/3*2/3 + 2/3*1/3 = 4/9; kappa = (2/3-4/9)/(1-4/9)
    assert (pair.first, pair.second, pair.shared) == ("a", "b", 3)
    assert pair.agreement == pytest.approx(2 / 3) and pair.kappa == pytest.approx(0.4)
    assert agreement([(1, "a", "keep"), (1, "b", "keep")])[0].kappa is None  # one label only: undefined


def test_review_queue_orders():
    from scar_core.errors import ScarError
    from scar_core.labels import review_queue

    best = list(range(100, 120))
    assert review_queue(best, {100, 105}) == [i for i in best if i not in (100, 105)]
    shuffled = review_queue(best, set(), "random", seed=3)
    assert sorted(shuffled) == best and shuffled != best
    assert review_queue(best, {shuffled[0]}, "random", seed=3) == shuffled[1:]  # the rest stays in place
    with pytest.raises(ScarError, match="unknown queue order"):
        review_queue(best, set(), "worst")


def test_markdown_is_rendered_highlighted_and_sanitised():
    from scar_core.display import render_markdown

    html = render_markdown("**bold** [site](https://example.org) [bad](javascript:alert(1)) <b onclick=x>raw</b>"
                           "\n\n```python\nprint('<i>')\n```")
    assert "<strong>bold</strong>" in html and 'href="https://example.org"' in html and 'rel="noopener' in html
    assert "javascript" not in html.split("[bad]")[0] and 'href="javascript' not in html
    assert "&lt;b onclick=x&gt;raw&lt;/b&gt;" in html
    assert '<span class="tok-nb">print</span>' in html and "&lt;i&gt;" in html


def test_bulk_labels_are_one_transaction_and_undo_restores(store, scored):
    from scar_core.errors import ScarError

    ids = runs.run_scores(store, scored.id)[0][:3].tolist()
    labelling.label(store, scored.id, [ids[0]], "flag", "ann", "unsure")
    done = labels.record(store, scored.id, "ann", ids, "keep", description="labelled 3 examples keep")
    assert (done.action.count, done.unchanged, done.action.kind, done.action.run_id) == (3, 0, "bulk", scored.id)
    # what each example had before is kept in its history (what undo puts back)
    before = [[(e.previous_label, e.previous_note, e.label) for e, _ in labels.history(store, i)][0] for i in ids]
    assert before == [("flag", "unsure", "keep"), (None, None, "keep"), (None, None, "keep")]
    assert labels.labelled_by(store, scored.id, "ann") == set(ids)
    events = labels.count_events(store)
    # one transaction: an action that fails part-way (an example id the store lacks) writes nothing
    with pytest.raises(Exception):
        labels.record(store, scored.id, "ann", [ids[1], 10 ** 9], "drop", description="labelled 2 examples drop")
    assert labels.count_events(store) == events and labels.labelled_by(store, scored.id, "ann") == set(ids)
    assert {x.label for x in labels.labels_for(store, ids)} == {"keep"}
    undone = labels.undo(store, scored.id, "ann")
    assert (undone.action.kind, undone.action.count, undone.unchanged) == ("undo", 3, 0)
    assert [(x.example_id, x.label, x.note) for x in labels.labels_for(store, ids)] == [(ids[0], "flag", "unsure")]
    with pytest.raises(ScarError, match="unknown label"):
        labels.record(store, scored.id, "ann", ids, "maybe", description="labelled 3 examples maybe")
    with pytest.raises(ScarError, match="unknown label"):
        labelling.label(store, scored.id, ids, "maybe", "ann")
    with pytest.raises(ScarError, match="Set your name"):
        labelling.label(store, scored.id, ids, "keep", "  ")
    assert labels.labelled_by(store, scored.id, "ann") == {ids[0]}
    assert labels.count_events(store) == events + 3  # the undo's own events; none from the refused actions


def test_a_run_stored_without_diagnostics_still_opens(store, scored):
    """Results from before diagnostics were stored (or written by other tools) carry none of them."""
    from sqlalchemy import update

    from db.models import Result

    with store.write() as s:
        s.execute(update(Result).values(diagnostics=None, lf_contribution=None, is_contribution=None))
    at = explore()
    assert not at.error, [e.value for e in at.error]
    assert at.get("metric")[0].value  # the example view is drawn: its score
    assert not at.exception, at.exception


def test_a_fence_whose_info_string_is_code_keeps_that_code_visible():
    """Issue 30, found 5: "```public static ..." rendered as an empty box (CommonMark took the code for
    the info string); tables get borders."""
    import html as html_lib

    from scar_core.display import code_css, render_markdown

    shown = render_markdown("Try:\n\n```public static final String[] VALUES = {\"a\"};\nint x = 1;\n```\n\n"
                            "```python\nprint(1)\n```")
    assert "public static final String[] VALUES" in html_lib.unescape(shown) and "int x = 1;" in shown
    assert '<code class="language-python">' in shown
    assert ".scar-markdown td {border" in code_css()


def test_every_lima_code_line_is_visible_when_rendered():
    import html as html_lib

    from scar_core.display import render_markdown
    from scar_core.load import load
    from tests.conftest import shared_file

    examples = load(shared_file("pools/lima_1k.alpaca.json")).examples[:60]
    checked = 0
    for example in examples:
        shown = html_lib.unescape(re.sub(r"<[^>]+>", "", render_markdown(example.response)))
        for info in re.findall(r"^```([^\n`]+)$", example.response, re.M):
            if info.strip():
                assert info.strip() in shown, info
                checked += 1
    assert checked >= 5
