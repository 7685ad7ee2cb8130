"""CPU use of an idle app server with one open tab (issue 20: under 2% of a CPU over 60 s).

Starts `streamlit run app.py` with the project's .streamlit/config.toml on a fresh store, opens the
Rank page in headless Debian chromium (Playwright), waits for the page, then samples the CPU time of
the server's whole process tree (server, workers) with psutil over the window. Prints one JSON line:

    python bench/idle_server.py [--seconds 60] [--page rank] [--file-watcher auto]

`--file-watcher auto` measures Streamlit's own default instead of the project's setting ("none").

The browser's own CPU is not counted: the question is what the server costs while nobody works.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_seconds(root: psutil.Process) -> float:
    """User + system CPU seconds of a process and its living descendants (children reaped by the
    server count through the server's own `children_*` times)."""
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


@contextmanager
def serve(env: dict[str, str], log_path: Path, extra: list[str] | None = None,
          launcher: tuple[str, ...] = ("-m", "streamlit", "run", "app.py")) -> Iterator[tuple[str, int]]:
    """`streamlit run app.py` (or `launcher`, given the same options) on a free port with these environment
    additions; yields (URL, process id) once its health check answers, and stops the whole process group
    afterwards."""
    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, *launcher, "--server.headless", "true",
                                   "--server.port", str(port), "--server.address", "127.0.0.1", *(extra or [])],
                                  cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("streamlit did not start:\n" + log_path.read_text()[-2000:])
        yield url, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def measure(seconds: float, page: str, file_watcher: str | None = None) -> dict:
    """Start the server, open a tab on `page`, and measure the server tree's CPU while idle
    (`file_watcher` overrides the config's server.fileWatcherType)."""
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="idle_server_"))
    env = {"SCAR_DB_URL": str(folder / "studio.db"), "SCAR_DATA_DIR": str(folder / "data")}
    watcher = ["--server.fileWatcherType", file_watcher] if file_watcher else []
    with serve(env, folder / "server.log", watcher) as (url, pid), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page()
        tab.goto(f"{url}/{page}")
        tab.wait_for_selector("text=Your name (for labels)", timeout=120_000)
        tab.wait_for_timeout(5_000)  # let the first run and its fragments settle
        process = psutil.Process(pid)
        before, started = tree_cpu_seconds(process), time.monotonic()
        tab.wait_for_timeout(seconds * 1000)
        used, elapsed = tree_cpu_seconds(process) - before, time.monotonic() - started
        browser.close()
    log_text = (folder / "server.log").read_text(errors="replace")
    return {"seconds": round(elapsed, 1), "server_cpu_seconds": round(used, 3),
            "cpu_percent_of_one_core": round(100 * used / elapsed, 2), "page": page,
            "inotify_overflows_in_log": log_text.count("Inotify queue overflowed"),
            "file_watcher": file_watcher or "as in .streamlit/config.toml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--page", default="rank", help="the page the tab opens (a bookmarked URL path)")
    parser.add_argument("--file-watcher", choices=["auto", "watchdog", "poll", "none"],
                        help="override server.fileWatcherType (default: the project's config)")
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds, args.page, args.file_watcher)))


if __name__ == "__main__":
    main()
