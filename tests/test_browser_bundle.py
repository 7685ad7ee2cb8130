"""Issue 27 in a real headless browser: on Select, moving the coverage slider changes the evidence panel
(the cut beside random, longest-k and length-matched subsets of its size); the cut is saved, and the
Export page's bundle downloads as one zip of four JSONL files and one manifest whose row counts match
the files. Uses test_browser's server and Chromium; the store is scored in this process first."""
from __future__ import annotations

import hashlib
import json
import re
import zipfile

import pytest

from db.store import open_store
from tests.conftest import score_file, style_pool
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, server  # noqa: F401 (server is a fixture)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")


def evidence_cut_row(page):
    """The evidence table's "cut" row, as the grid's accessible table holds it (the canvas draws the same)."""
    grid = page.locator('[data-testid="stDataFrame"]').filter(has=page.locator("th", has_text="clusters touched"))
    return grid.locator("tr").filter(has=page.locator("td", has_text=re.compile(r"^cut$")))


def test_coverage_moves_the_evidence_and_the_bundle_downloads_four_files_and_a_manifest(server, tmp_path,  # noqa: F811
                                                                                        tiny_checkpoint):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    store = open_store(str(tmp_path / "studio.db"))
    score_file(store, style_pool(tmp_path, rows=14), tiny_checkpoint)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(accept_downloads=True, viewport={"width": 1400, "height": 2400})
        page.set_default_timeout(90_000)
        idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
        page.goto(server + "/select")
        page.get_by_text("5 of 14").wait_for()  # kept at the default ratio, 0.3, rounded up (the first run is slow)
        kept = page.locator('[data-testid="stMetric"]').first  # "Kept"
        # typed into the slider's number box: twenty arrow presses could land mid-run, where Streamlit
        # may drop one (a loaded machine ended at 0.47: the same 7 rows, another name)
        typed = page.get_by_label("Keep this ratio (type it)")
        typed.fill("0.5")
        typed.press("Enter")
        expect(kept).to_contain_text("7 of 14")
        page.locator('input[aria-label="Save this selection as"][value="ratio-0.5"]').wait_for()
        idle.wait_for()
        cut_row = evidence_cut_row(page)
        plain = cut_row.inner_text()
        assert cut_row.locator("td").all_inner_texts()[:2] == ["cut", "7"]  # as many rows as the cut keeps

        coverage = page.get_by_role("slider", name="Coverage")
        coverage.focus()
        page.keyboard.press("End")  # coverage 1: the cut spreads over the clusters
        expect(coverage).to_have_value("1")
        page.get_by_text("clusters (k-means").wait_for()
        expect(cut_row).not_to_have_text(plain)  # the evidence panel follows the cut
        assert cut_row.locator("td").all_inner_texts()[:2] == ["cut", "7"]
        idle.wait_for()
        page.screenshot(path=str(ARTIFACTS / "bundle-1-select.png"), full_page=True)
        page.get_by_role("button", name="Save selection").click()
        page.get_by_text("with 7 examples").wait_for()

        page.locator('[data-testid="stSidebarNav"] a', has_text="Export").click()
        bundle = page.get_by_role("button", name="Download the bundle (zip)")
        bundle.wait_for()
        with page.expect_download() as download:
            bundle.click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        page.screenshot(path=str(ARTIFACTS / "bundle-2-export.png"), full_page=True)
        browser.close()

    assert path.name == "pool-ratio-0.5-alpaca-bundle.zip"
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    jsonl = sorted(name for name in files if name.endswith(".jsonl"))
    manifests = [name for name in files if name.endswith(".manifest.json")]
    assert len(files) == 5 and len(jsonl) == 4 and manifests == ["pool-ratio-0.5-alpaca.jsonl.manifest.json"]
    info = json.loads(files[manifests[0]])
    lines = {name: [json.loads(x) for x in files[name].decode().splitlines()] for name in jsonl}
    assert len(lines[info["path"]]) == info["rows"] == 7
    assert info["selection"]["ordering"]["coverage"] == 1.0
    listed = {b["path"]: b for b in info["baselines"]}
    assert sorted([info["path"], *listed]) == jsonl
    for name, entry in listed.items():
        assert entry["rows"] == len(lines[name]) == 7 and entry["sha256"] == hashlib.sha256(files[name]).hexdigest()
    assert {b["kind"] for b in info["baselines"]} == {"random", "longest", "length-matched"}
    assert {name: figures["rows"] for name, figures in info["evidence"]["subsets"].items()} == \
        {"cut": 7, "random": 7, "longest": 7, "length-matched": 7}
