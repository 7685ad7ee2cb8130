"""Explore in a real headless browser (issue 30): a click on a map point opens that example in the maps'
default lasso mode (found 6), the table's labels and ▶ marker follow keyboard labelling (found 8),
the score's parts are named in full (found 9), and a LIMA code example is rendered with every line of
its code (found 5; screenshot in test-artifacts/). Uses test_browser's server and Chromium."""
from __future__ import annotations

import json

import pytest

from db import labels, runs
from db.store import open_store
from tests.conftest import score_file, shared_file
from tests.test_browser import ARTIFACTS, CHROMIUM, open_page, server  # noqa: F401 (server is a fixture)
from tests.test_browser_label import labelling_as_ann, scored_run

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")

# The pixel position of the point of the first map farthest from every other point (so a click there can
# only mean that point) among the examples `among`, and its example id.
LONELY_POINT = """(among) => {
  const gd = document.querySelector('[class*="st-key-map_lf"] .js-plotly-plot');
  const layout = gd._fullLayout, box = gd.getBoundingClientRect(), points = [];
  for (const trace of gd._fullData) {
    for (let k = 0; k < trace.x.length; k++) {
      points.push({x: box.left + layout._size.l + layout.xaxis.l2p(trace.x[k]),
                   y: box.top + layout._size.t + layout.yaxis.l2p(trace.y[k]), id: trace.customdata[k]});
    }
  }
  let best = null, far = -1;
  for (const p of points.filter((q) => among.includes(Number(q.id)))) {
    const near = Math.min(...points.filter((q) => q !== p).map((q) => Math.hypot(p.x - q.x, p.y - q.y)));
    if (near > far) { far = near; best = p; }
  }
  return {x: best.x, y: best.y, id: Number(best.id), dragmode: layout.dragmode, clickmode: layout.clickmode};
}"""

# True once the table marks ranks `rank` and `rank` + 1 keep and ▶ opens rank + 2 (9 columns a row)
TABLE_FOLLOWS = """(rank) => {
  const cells = [...document.querySelector('[data-testid="stDataFrame"]').querySelectorAll('[role=gridcell]')];
  const row = (r) => cells.slice((r - 1) * 9, r * 9).map((c) => c.textContent);
  return row(rank)[5] === "keep" && row(rank + 1)[5] === "keep" && row(rank + 2)[0] === "▶";
}"""


def settled(page) -> None:
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def test_a_click_opens_a_point_in_lasso_mode_and_the_table_follows_the_keys(server, tmp_path, tiny_checkpoint):  # noqa: F811
    from playwright.sync_api import sync_playwright

    store, run = scored_run(tmp_path, tiny_checkpoint)
    best = runs.result_ids(store, run.id)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = labelling_as_ann(pw, server)
        page.locator('[class*="st-key-map_lf"] .js-plotly-plot .nsewdrag').first.wait_for()
        point = page.evaluate(LONELY_POINT, best[1:5])  # not the example open already; the table shows the next
        assert point["dragmode"] == "lasso" and point["clickmode"] == "event"  # Streamlit's default for the maps
        page.mouse.move(point["x"] - 5, point["y"] - 5)
        page.mouse.move(point["x"], point["y"], steps=5)  # as a hand does: the point is hovered, then clicked
        page.mouse.click(point["x"], point["y"])
        rank = best.index(point["id"]) + 1
        page.get_by_text(f"Example at rank {rank}", exact=True).wait_for(timeout=10_000)
        settled(page)

        # K twice from the example opened on the map: the table's label column follows within a second
        page.get_by_role("heading", name="Ranked examples").click()
        for position in (rank + 1, rank + 2):
            page.keyboard.press("k")
            page.get_by_text(f"{position} of 12 in this order").wait_for()
            settled(page)
        assert [x[2] for x in labels.run_annotations(store, run.id)] == ["keep", "keep"]
        # the table (its accessible cells: open, rank, percentile, score, source, label, ...) within a second
        page.wait_for_function(TABLE_FOLLOWS, arg=rank, timeout=1_000)
        page.screenshot(path=str(ARTIFACTS / "explore-map-click-and-keys.png"), full_page=True)
        browser.close()


def test_screenshot_of_a_lima_code_example(server, tmp_path, tiny_checkpoint):  # noqa: F811
    """LIMA's Java example (a fence with code on its opening line) shows every method signature, and
    the score's parts are named in full, not cut off."""
    from playwright.sync_api import expect, sync_playwright

    rows = json.loads(shared_file("pools/lima_1k.alpaca.json").read_text())[2:16]  # 14 rows: a PCA map, fast
    data = tmp_path / "lima.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = open_store(str(tmp_path / "studio.db"))
    score_file(store, data, tiny_checkpoint, mapped=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = open_page(pw, server + "/explore")
        page.get_by_text("of 14 in this order").wait_for()
        search = page.get_by_label("Search instruction and response")
        search.fill("with values like so")
        search.press("Enter")
        page.get_by_text("1 of 1 in this order").wait_for()
        response = page.locator('[data-testid="scar-response"]')
        for line in ("public static boolean useList(String[] arr, String targetValue) {",
                     "public static boolean useSet(String[] arr, String targetValue) {"):
            expect(response.get_by_text(line, exact=False).first).to_be_visible()
        for name in ("Starting point (this data set's average pair)", "How the response is written (form)",
                     "How it answers the instruction (surprisal)"):
            shown = page.locator("[data-testid=stMarkdownContainer]").get_by_text(name, exact=True).locator("visible=true")
            expect(shown).to_have_count(1)
            assert shown.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), f"{name} is cut off"
        settled(page)
        page.get_by_role("heading", name="Example at rank").evaluate("e => e.scrollIntoView()")
        page.screenshot(path=str(ARTIFACTS / "explore-lima-code.png"), full_page=False)
        page.screenshot(path=str(ARTIFACTS / "explore-lima-code-full.png"), full_page=True)
        browser.close()


def test_an_upload_is_previewed_with_its_problems_and_named_as_uploaded(server, tmp_path):  # noqa: F811
    """Found 11 in a browser: the uploaded file's own name in every message (never the server's copy),
    the bad row listed before Import, strict by default, "1 pair" once the valid rows are kept."""
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "my pairs.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi.", "output": "Hi there, nice to meet you. " * 6}) + "\n"
                    + json.dumps({"instruction": "Count.", "output": 5}) + "\n")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser, page = open_page(pw, server + "/datasets")
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(data))
        page.get_by_text("line 2: field 'output': expected text, got a number").wait_for()
        page.get_by_text("1 problem in the first 2 rows", exact=False).wait_for()
        settled(page)
        page.screenshot(path=str(ARTIFACTS / "datasets-preview-problems.png"), full_page=True)
        page.get_by_role("button", name="Import").click()
        refused = page.get_by_text("my pairs.jsonl, line 2: field 'output': expected text, got a number")
        refused.wait_for()
        expect(page.get_by_text("uploads", exact=False)).to_have_count(0)  # the server's copy is never named
        page.get_by_test_id("stCheckbox").get_by_text("Keep only the valid rows").click()
        settled(page)
        page.get_by_role("button", name="Import").click()
        page.get_by_text("Imported my pairs.jsonl as data set #1: 1 pair from 2 rows, 1 row left out").wait_for()
        browser.close()
