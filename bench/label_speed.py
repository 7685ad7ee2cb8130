"""How long an annotator waits per key on the Explore page of a big run, in a real browser.

    python bench/label_speed.py [--rows 100000] [--keys 8]

Builds bench/app_pages.py's synthetic store (one scored run with both maps and a few hundred
labels), starts the app (bench/idle_server.serve), opens Explore in headless Debian chromium, sets
an annotator name, then presses K (keep: save, open the next) --keys times and J (next, nothing
saved) as often, timing each press until the page says the next example is open. Prints the
median and the slowest wait per key and one JSON line. The browser draws without a GPU here, as
on most servers; what it costs to draw is part of the wait, as it is for the user.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_pages import build  # noqa: E402
from bench.idle_server import ARGS, CHROMIUM, serve  # noqa: E402


def waits(tab, key: str, first: int, presses: int, total: int) -> list[float]:
    """Seconds from each press of `key` until "N of TOTAL in this order" shows the next position."""
    out = []
    for k in range(presses):
        start = time.perf_counter()
        tab.keyboard.press(key)
        tab.get_by_text(f"{first + k + 1} of {total} in this order").wait_for()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=8)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="label_speed_"))
    url = build(folder, args.rows)
    with serve({"SCAR_DB_URL": url}, folder / "server.log") as (server, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1600})
        tab.set_default_timeout(300_000)
        start = time.perf_counter()
        tab.goto(server + "/explore")
        tab.get_by_text(f"1 of {args.rows} in this order").wait_for()
        opened = time.perf_counter() - start
        name = tab.get_by_label("Your name (for labels)")
        name.fill("bench")
        name.press("Enter")
        tab.get_by_text("Labelling as bench").wait_for()
        tab.get_by_role("heading", name="Ranked examples").click()  # keys go to the page, not a text box
        result = {"rows": args.rows, "first_load_s": round(opened, 2)}
        for key, first in (("k", 1), ("j", 1 + args.keys)):
            seconds = waits(tab, key, first, args.keys, args.rows)
            result[key] = {"median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2)}
            print(f"{key.upper()}: median {statistics.median(seconds):.2f} s, slowest {max(seconds):.2f} s "
                  f"over {args.keys} presses", flush=True)
        browser.close()
    print(f"first load of Explore: {opened:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
