"""The first hour in a real browser at 1500x1000 (issue 30): the Start page with the five steps, the Rank
page showing a run at its top the moment it starts and the way on to Explore when it ends, and a link that
names the run and the open example. Uses test_browser's server and Chromium; screenshots of the Start page
and of Rank during a run go to test-artifacts/."""
from __future__ import annotations

import json
import re

import pytest

from db import runs
from db.store import open_store
from tests.conftest import score_file
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, server  # noqa: F401 (server is a fixture)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")
WINDOW = {"width": 1500, "height": 1000}


def pool(path, rows: int, tag: str):
    path.write_text("".join(json.dumps({"instruction": f"{tag} question {i}: how do I do task {i}?",
                                        "output": f"Here is how, step {i}:\n\n1. First.\n2. Then {tag}."}) + "\n"
                            for i in range(rows)))
    return path


def in_view(box: dict | None) -> bool:
    """Whether an element's box lies inside the 1500x1000 window as it is scrolled now."""
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= WINDOW["height"]


def test_start_page_rank_progress_on_top_and_links_that_name_run_and_example(server, tmp_path,  # noqa: F811
                                                                              tiny_checkpoint):
    from playwright.sync_api import expect, sync_playwright

    store = open_store(str(tmp_path / "studio.db"))
    first = score_file(store, pool(tmp_path / "first.jsonl", 12, "first"), tiny_checkpoint, mapped=True)  # no map job to rerun the page mid-click
    second = pool(tmp_path / "second.jsonl", 1500, "second")  # seconds of scoring, even for the tiny ranker
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport=WINDOW)
        page.set_default_timeout(60_000)

        page.goto(server)
        page.get_by_role("heading", name="SCAR Studio").wait_for()
        for k, step in enumerate(["Datasets", "Rank", "Explore", "Select", "Export"], 1):
            expect(page.get_by_role("link", name=f"{k}. {step}")).to_be_visible()
        page.get_by_text("1 data set (12 pairs)").wait_for()
        page.get_by_text("1 run, 1 finished").wait_for()
        page.screenshot(path=str(ARTIFACTS / "first-hour-1-start.png"))

        page.get_by_role("link", name="1. Datasets").click()
        page.get_by_role("heading", name="Datasets", exact=True).wait_for()
        path_box = page.get_by_label(re.compile("a file path on the server"))
        path_box.fill(str(second))
        path_box.press("Enter")
        page.get_by_role("button", name="Import").click()
        page.get_by_text(re.compile("Imported .* as data set #2")).wait_for()

        page.locator('[data-testid="stSidebarNav"] a', has_text="Rank").click()
        page.get_by_role("heading", name="Rank", exact=True).wait_for()
        page.get_by_text("checkpoint folder", exact=True).click()
        folder = page.get_by_label("Checkpoint folder on the server")
        folder.fill(str(tiny_checkpoint))
        folder.press("Enter")
        start = page.get_by_role("button", name="Start scoring")
        start.wait_for()
        assert page.evaluate("window.scrollY") == 0 and in_view(start.bounding_box())  # no scrolling to start
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()  # a click mid-run can be lost
        start.click()
        started = page.get_by_text(re.compile(r"Started run \d+\."))
        started.wait_for(timeout=120_000)
        bar = page.locator('[data-testid="stMain"] [data-testid="stProgress"]').first
        bar.wait_for()
        page.screenshot(path=str(ARTIFACTS / "first-hour-2-rank-running.png"))
        for element in (started, bar):  # in the window as it is, no scrolling
            assert in_view(element.bounding_box()), element.bounding_box()
        run_id = runs.list_runs(store)[0].id
        expect(page.locator('[data-testid="stSidebar"] [data-testid="stProgress"]').first).to_contain_text(
            f"Scoring run {run_id}")  # the sidebar says so on every page

        onward = page.get_by_role("link", name=f"Open run {run_id} in Explore")
        onward.wait_for(timeout=180_000)
        assert in_view(onward.bounding_box())
        onward.click()
        page.get_by_role("heading", name="Ranked examples").wait_for()
        page.wait_for_url(re.compile(rf"/explore\?run={run_id}&example=\d+"))

        ranked = runs.result_ids(store, first.id, None, sort="score_desc")
        shared = browser.new_page(viewport=WINDOW)  # a colleague opens a link to run 1's fourth best example
        shared.set_default_timeout(60_000)
        shared.goto(f"{server}/explore?run={first.id}&example={ranked[3]}")
        shared.get_by_role("heading", name="Example at rank 4").wait_for()  # run 2's rows hold no such example
        assert f"run={first.id}" in shared.url and f"example={ranked[3]}" in shared.url
        # the page at rest: while a run of the page is drawing, the old and the new buttons both show
        shared.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
        shared.get_by_role("button", name=re.compile(r"^Next(?! unlabelled)")).click()
        shared.get_by_role("heading", name="Example at rank 5").wait_for()
        shared.wait_for_url(re.compile(rf"example={ranked[4]}"))
        browser.close()
