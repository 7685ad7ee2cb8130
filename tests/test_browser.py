"""End to end in a real headless browser: upload, rank, explore, move the ratio slider, export, and check
the downloaded JSONL; data carrying scripts, event handlers, javascript: links, remote images, ANSI
escapes and bidi/zero-width characters must stay inert and make no request leave localhost.

Needs Debian's chromium (`.ci/run` installs it); Playwright drives it (never `playwright install`).
Screenshots of each page go to test-artifacts/.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from bench.idle_server import ARGS, CHROMIUM, serve

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PAYLOAD = ('<script>window.__pwned="script"</script><img src=x onerror="window.__pwned=\'img\'"> '
           '<a href="javascript:window.__pwned=\'link\'">click</a> [md link](javascript:window.__pwned=\'md\') '
           '![remote](http://evil.example.com/pixel.png) <img src="https://evil.example.com/i.png"> '
           '\x1b[31mred\x1b[0m zero\u200bwidth \u202eevil override')
ROWS = [{"instruction": "Say hello <script>alert('instruction')</script>", "output": PAYLOAD},
        {"instruction": "What is 2+2?", "output": "2 + 2 = 4."},
        {"instruction": "Name a colour.", "output": "Blue is a colour of the sky."},
        {"instruction": "Give a greeting.", "output": "Good morning! I hope your day goes well."},
        {"instruction": "Count to three.", "output": "One, two, three."},
        {"instruction": "Explain rain.", "output": "Rain is water falling from clouds when droplets grow heavy."}]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")


def open_page(pw, url: str, width: int = 1500, height: int = 1000, **options):
    """(browser, page): headless Debian Chromium showing `url` in a window of this size, each step
    waiting up to 60 s (`options` go to new_page, e.g. accept_downloads)."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
    page = browser.new_page(viewport={"width": width, "height": height}, **options)
    page.set_default_timeout(60_000)
    page.goto(url)
    return browser, page


def slide_to(page, slider, number, target: float, step: float = 0.01) -> None:
    """Move a slider to `target` with its arrow keys as a person does: press, look, press again, until
    the number box beside it (the value the server holds) shows the target too. Every press sends a
    rerun; the test reads the box, not the slider, so it never passes on a value the server lacks (the
    Select page once moved the cut back to the box's older value: see pages/select.py's cut_value)."""
    shown = told = None
    for _ in range(12):
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
        shown, told = float(slider.input_value()), float(number.input_value())
        steps = round((target - shown) / step)
        if not steps and abs(told - target) < step / 2:
            return
        for keys in ([["ArrowRight" if steps > 0 else "ArrowLeft"] * abs(steps)] if steps else
                     [["ArrowLeft"], ["ArrowRight"]]):
            for key in keys:
                slider.press(key)  # focused again at each press: a rerun may take the focus away
            page.wait_for_timeout(600)
            page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    raise AssertionError(f"the slider shows {shown} and the number box {told}, not {target}")


@pytest.fixture
def server(tmp_path):
    """`streamlit run app.py` on a free port with a fresh store (bench/idle_server.serve)."""
    with serve({"SCAR_DB_URL": str(tmp_path / "studio.db")}, tmp_path / "server.log",
               ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]) as (url, _):
        yield url


def test_upload_rank_select_export_in_a_browser(server, tmp_path, tiny_checkpoint):
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "hostile.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    ARTIFACTS.mkdir(exist_ok=True)
    hosts, dialogs = set(), []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(accept_downloads=True, viewport={"width": 1400, "height": 1800})
        page.on("request", lambda r: hosts.add(urlparse(r.url).hostname))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.set_default_timeout(60_000)

        def go(name: str, heading: str) -> None:
            page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
            page.get_by_role("heading", name=heading).wait_for()

        def shot(name: str) -> None:
            page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached")  # rerun finished
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        page.goto(server + "/datasets")
        page.get_by_role("heading", name="Datasets", exact=True).wait_for()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(data))
        page.get_by_text("Detected format: alpaca").wait_for()
        page.get_by_role("button", name="Import").click()
        page.get_by_text("Imported hostile.jsonl as data set #1: 6 pairs from 6 rows.").wait_for()
        shot("1-datasets")

        go("Rank", "Rank")
        page.get_by_text("checkpoint folder", exact=True).click()
        folder = page.get_by_label("Checkpoint folder on the server")
        folder.fill(str(tiny_checkpoint))
        folder.press("Enter")
        page.get_by_role("button", name="Start scoring").click()
        page.get_by_text("Started run 1.").wait_for(timeout=120_000)
        page.get_by_text("Run 1 finished: 6 pairs scored.").wait_for(timeout=120_000)
        shot("2-rank")

        go("Explore", "Explore")
        page.get_by_role("heading", name="Ranked examples").wait_for()
        page.get_by_label("Search instruction and response").fill("Say hello")
        page.get_by_label("Search instruction and response").press("Enter")
        rendered = page.locator(".scar-markdown", has_text="onerror")  # the markdown view shows tags as text
        rendered.first.wait_for()
        expect(rendered.first).to_contain_text('<script>window.__pwned="script"</script>')
        page.get_by_text("Raw text", exact=True).click()
        shown = page.locator('[data-testid="stCode"]', has_text="onerror")
        shown.first.wait_for()
        expect(shown.first).to_contain_text('<script>window.__pwned="script"</script>')
        expect(shown.first).to_contain_text("\\u202e")
        page.get_by_text("Draw a box or lasso on a map").wait_for(timeout=120_000)  # mapped when the run ended
        page.get_by_text("Instructional surprisal (v_is)").wait_for()
        shot("3-explore")

        go("Select", "Select")
        kept = page.locator('[data-testid="stMetric"]').first  # "Kept"
        expect(kept).to_contain_text("2 of 6")
        ratio = page.get_by_role("slider", name="Keep this ratio")
        slide_to(page, ratio, page.get_by_role("spinbutton", name="Keep this ratio (type it)"), 0.50)  # from 0.30
        expect(ratio).to_have_value("0.5")
        # "3 of 6" holds from 0.34 up, so wait for the name the server derives from the value it got: the
        # slider sends its value 200 ms after the last key press, and a save before that saves the old cut
        name_box = page.get_by_label("Save this selection as")  # a rerun briefly shows the old box beside it
        page.locator('input[aria-label="Save this selection as"][value="ratio-0.5"]').wait_for(timeout=30_000)
        expect(name_box).to_have_count(1)
        expect(name_box).to_have_value("ratio-0.5")
        expect(kept).to_contain_text("3 of 6")
        page.get_by_role("button", name="Save selection").click()
        page.get_by_text("with 3 examples").wait_for()
        shot("4-select")

        go("Export", "Export")
        page.get_by_role("button", name="Download JSONL").wait_for()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download JSONL").click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        page.get_by_role("heading", name="Export", exact=True).wait_for()
        shot("5-export")
        go("Train", "Train a ranker")
        page.get_by_role("button", name="Start training").wait_for()
        shot("6-train")
        pwned = page.evaluate("window.__pwned")
        browser.close()

    assert path.name == "hostile-ratio-0.5-alpaca.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 3 and all(set(x) >= {"instruction", "output"} for x in lines)
    source = {r["instruction"]: r["output"] for r in ROWS}
    assert all(source[x["instruction"]] == x["output"] for x in lines)  # exported byte for byte, payload included
    assert pwned is None and dialogs == []
    assert hosts <= {"127.0.0.1", "localhost", None}, hosts
