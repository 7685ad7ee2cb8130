"""Labelling at speed in a real headless browser: ten examples labelled with the keyboard alone, then a
lasso on a map labelled in bulk, confirmed and undone. Uses test_browser's server and Chromium; the
store is filled (imported, scored, mapped) in this process first. Screenshots go to test-artifacts/."""
from __future__ import annotations

import json

import pytest

from db import labels, runs
from db.store import open_store
from tests.conftest import score_file
from tests.test_browser import ARTIFACTS, CHROMIUM, open_page, server  # noqa: F401 (server is a fixture)
from tests.test_explore import ROWS

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")


def scored_run(tmp_path, checkpoint):
    """The test store with Explore's twelve rows scored by the tiny ranker and mapped."""
    store = open_store(str(tmp_path / "studio.db"))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return store, score_file(store, data, checkpoint, mapped=True)


def labelling_as_ann(pw, server: str):
    """(browser, page) on Explore with the annotator name "ann" set and the page, not a text box, focused."""
    browser, page = open_page(pw, server + "/explore", 1400, 1600)
    page.get_by_text("1 of 12 in this order").wait_for()
    name = page.get_by_label("Your name (for labels)")
    name.fill("ann")
    name.press("Enter")
    page.get_by_text("Labelling as ann").wait_for()
    page.get_by_role("heading", name="Ranked examples").click()
    return browser, page


def test_label_ten_by_keyboard_then_a_lasso_in_bulk(server, tmp_path, tiny_checkpoint):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    store, run = scored_run(tmp_path, tiny_checkpoint)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = labelling_as_ann(pw, server)
        for key, position in [*zip("kdfkdfkdfk", range(2, 12)), ("p", 10), ("j", 11)]:
            page.keyboard.press(key)  # at an annotator's pace: once the page has finished its run
            page.get_by_text(f"{position} of 12 in this order").wait_for()
            page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
        page.screenshot(path=str(ARTIFACTS / "label-1-keyboard.png"), full_page=True)
        mine = {x[0]: x[2] for x in labels.run_annotations(store, run.id) if x[1] == "ann"}
        best = runs.result_ids(store, run.id)
        assert [mine.get(i) for i in best[:10]] == [{"k": "keep", "d": "drop", "f": "flag"}[c] for c in "kdfkdfkdfk"]
        assert len(mine) == 10  # p and j only moved

        area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
        page.mouse.move(area["x"] + 2, area["y"] + 2)
        page.mouse.down()
        for fx, fy in ((0.99, 0.01), (0.99, 0.99), (0.01, 0.99), (0.01, 0.02)):
            page.mouse.move(area["x"] + fx * area["width"], area["y"] + fy * area["height"], steps=8)
        page.mouse.up()
        page.get_by_text("(of 12 picked on a map)").wait_for()
        page.get_by_text("Label many at once").click()
        # the button counts what will change: 4 of the 12 carry ann's keep already
        page.get_by_role("button", name="Label 8 as keep…").click()
        page.get_by_text("Label 8 examples as keep under your name?").wait_for()
        page.get_by_role("button", name="Confirm").click()
        page.get_by_text("Saved: labelled 12 examples keep (8 changed, 4 already so).").wait_for()
        page.get_by_role("button", name="Undo: labelled 12 examples keep").wait_for()
        assert sorted(x[2] for x in labels.run_annotations(store, run.id)) == ["keep"] * 12
        page.screenshot(path=str(ARTIFACTS / "label-2-bulk.png"), full_page=True)
        page.keyboard.press("u")
        page.get_by_text("Undone: labelled 12 examples keep (8 reverted).").wait_for()
        expect(page.get_by_role("button", name="Confirm")).to_have_count(0)
        browser.close()
    assert {x[0]: x[2] for x in labels.run_annotations(store, run.id) if x[1] == "ann"} == mine


def test_a_key_pressed_before_the_page_redraws_labels_the_next_example(server, tmp_path, tiny_checkpoint):  # noqa: F811
    """K then D at once: D is for the example K opened, never a second verdict on the first one (the
    buttons of the first example may still be on the page when D arrives). When both reach the server in
    one rerun their order is lost: then neither is saved, and the page says so."""
    from playwright.sync_api import sync_playwright

    store, run = scored_run(tmp_path, tiny_checkpoint)
    with sync_playwright() as pw:
        browser, page = labelling_as_ann(pw, server)
        page.keyboard.press("k")
        page.keyboard.press("d")
        page.get_by_text("Undo: labelled 1 example").or_(page.get_by_text("K and D arrived together")).wait_for()
        page.wait_for_timeout(2_000)  # let a late D land, if it is going to
        together = page.get_by_text("K and D arrived together").count()
        browser.close()
    best = runs.result_ids(store, run.id)
    mine = {x[0]: x[2] for x in labels.run_annotations(store, run.id) if x[1] == "ann"}
    if together:
        assert mine == {}
    else:
        assert mine[best[0]] == "keep"
        assert set(mine) <= {best[0], best[1]} and mine.get(best[1], "drop") == "drop"
