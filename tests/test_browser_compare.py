"""Issue 20, part C in a real headless browser: the Compare runs view of two runs of tiny random rankers
(figures, charts, a disagreeing row opened), then on the Select page a click on the threshold curve
moving the cut and the ratio slider and its number box following each other. Screenshots go to
test-artifacts/. Needs Debian's chromium."""
from __future__ import annotations

from pathlib import Path

import pytest

from db import runs
from db.store import open_store
from scar_core.jobs import datasets as importing
from scar_core.jobs.runner import run_job
from scar_core.jobs.score import submit_score
from tests.conftest import tiny_ranker
from tests.test_browser import ARGS, ARTIFACTS, CHROMIUM, ROWS, server, slide_to  # noqa: F401 (server is a fixture)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")


def two_runs(folder: Path, checkpoint: Path) -> list[int]:
    """The server's store with one dataset (ROWS, one of them hostile) scored by two tiny rankers."""
    import json

    data = folder / "hostile.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    tiny_ranker(seed=1).save(folder / "other-ranker")
    store = open_store(str(folder / "studio.db"))
    dataset = importing.import_file(store, data)
    made = []
    for model in (checkpoint, folder / "other-ranker"):
        run = submit_score(store, dataset.id, model=str(model), device="cpu", precision="fp32", launch=False)
        assert run_job(store, run.job_id).status == "done"
        made.append(run.id)
    return made


def test_compare_view_and_clicking_the_threshold_curve(server, tmp_path, tiny_checkpoint):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    first, second = two_runs(tmp_path, tiny_checkpoint)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(60_000)

        def go(name: str, heading: str) -> None:
            page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
            page.get_by_role("heading", name=heading).wait_for()
            page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached")

        page.goto(server)
        page.get_by_role("heading", name="SCAR Studio").wait_for()
        go("Compare runs", "Compare runs")
        metrics = page.locator('[data-testid="stMetric"]')
        expect(metrics.first).to_contain_text("Rows compared6")
        expect(metrics.nth(1)).to_contain_text("Spearman ρ")
        expect(page.locator(".js-plotly-plot")).to_have_count(2)
        expect(page.get_by_text("Overlap of the two runs' top k%")).to_be_visible()
        expect(page.get_by_text(f"score in run {second}").first).to_be_visible()
        opened = page.locator('[data-testid="stExpander"]').first
        opened.locator("summary").click()
        instruction, response = opened.locator('[data-testid="stCode"]').all_inner_texts()
        assert (instruction.strip(), response.strip()) in {(r["instruction"], r["output"]) for r in ROWS}
        page.screenshot(path=str(ARTIFACTS / "compare-runs.png"), full_page=True)
        assert page.evaluate("window.__pwned") is None

        go("Select", "Select")
        kept = page.locator('[data-testid="stMetric"]').first
        expect(kept).to_contain_text("2 of 6")
        curve = page.locator(".js-plotly-plot").filter(has_text="Threshold score against kept ratio")
        curve.scroll_into_view_if_needed()
        # the curve's point for the best 5 of 6 rows, in page pixels (from plotly's plot area and axis ranges)
        x, y = curve.evaluate("""gd => {
            const t = gd._fullData[0], i = t.x.length - 2, l = gd._fullLayout, box = gd.getBoundingClientRect();
            const xr = l.xaxis.range, yr = l.yaxis.range;
            return [box.left + l._size.l + (t.x[i] - xr[0]) / (xr[1] - xr[0]) * l._size.w,
                    box.top + l._size.t + (yr[1] - t.y[i]) / (yr[1] - yr[0]) * l._size.h];
        }""")
        page.mouse.click(x, y)
        expect(kept).to_contain_text("5 of 6", timeout=30_000)
        slider = page.get_by_role("slider", name="Keep this ratio")
        number = page.get_by_role("spinbutton", name="Keep this ratio (type it)")
        expect(slider).to_have_value("0.83")
        expect(number).to_have_value("0.83")
        page.screenshot(path=str(ARTIFACTS / "select-curve-click.png"), full_page=True)
        slide_to(page, slider, number, 0.50)  # with the keyboard: the number box follows
        expect(number).to_have_value("0.50", timeout=30_000)
        expect(kept).to_contain_text("3 of 6")
        number.fill("0.16")  # and the slider follows a typed number
        number.press("Enter")
        expect(slider).to_have_value("0.16", timeout=30_000)
        expect(kept).to_contain_text("1 of 6")
        browser.close()
    assert runs.count_done(open_store(str(tmp_path / "studio.db")), first) == 6
