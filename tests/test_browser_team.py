"""Team mode end to end in a real headless browser against a real OpenID Connect provider on loopback
(oidc-provider-mock, from PyPI): the app is started in team mode with Streamlit's own [auth] settings;
an unauthenticated visit sees only the sign-in; an admin assigns a data set, an annotator labels it and
is offered no export, runs or delete, a lead exports, and the audit view names each of them. The store
is filled (imported, scored, a selection saved) in this process first, in local mode.
Screenshots go to test-artifacts/."""
from __future__ import annotations

import csv
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.idle_server import ARGS, CHROMIUM, free_port, serve
from db import labels
from db.store import open_store
from scar_core.jobs import access, selection
from tests.conftest import score_file
from tests.test_browser import ARTIFACTS
from tests.test_explore import ROWS

ADMIN, LEAD, ANN = "admin@example.org", "lead@example.org", "ann@example.org"
pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
              pytest.mark.skipif(shutil.which("oidc-provider-mock") is None and not Path(sys.executable).with_name(
                  "oidc-provider-mock").exists(), reason="needs oidc-provider-mock (requirements-dev.txt)")]


@pytest.fixture
def provider(tmp_path):
    """oidc-provider-mock on a free loopback port: its discovery URL, once it answers."""
    port = free_port()
    command = Path(sys.executable).with_name("oidc-provider-mock")
    with open(tmp_path / "provider.log", "wb") as log:
        process = subprocess.Popen([str(command), "-p", str(port), "-H", "127.0.0.1"], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
    try:
        deadline = time.time() + 60
        while True:
            try:
                json.loads(urllib.request.urlopen(url, timeout=2).read())
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError((tmp_path / "provider.log").read_text())
                time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def team_server(tmp_path, provider, tiny_checkpoint):
    """The app in team mode against the provider, on a store holding one scored run and a saved selection:
    (URL, store, run)."""
    store = open_store(str(tmp_path / "studio.db"))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    run = score_file(store, data, tiny_checkpoint)
    cut, table = selection.select_run(store, run.id, "ratio", 0.5)
    selection.save(store, run.id, "top half", cut, table)
    access.set_role(store, LEAD, access.LEAD)  # local mode: the store's owner sets up the lead
    folder = tmp_path / "data"
    folder.mkdir()
    settings = tmp_path / "secrets.toml"
    settings.write_text(f"""[scar]
team = true
first_admin = "{ADMIN}"
data_folders = ["{folder}"]

[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "scar-studio"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{provider}"
""")
    with serve({"SCAR_DB_URL": str(tmp_path / "studio.db")}, tmp_path / "server.log",
               ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                "--secrets.files", str(settings)], launcher=("-m", "scar_core", "serve")) as (url, _):
        yield url, store, run


def signed_in(browser, url: str, who: str):
    """A fresh browser context signed in as `who` through the provider's authorisation page."""
    page = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1600}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    page.locator("input[name=sub]").fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.get_by_text(f"Signed in as {who}").wait_for()
    return page


def nav(page) -> list[str]:
    """The pages the sidebar offers (none listed: Streamlit shows no menu for a single page)."""
    settled(page)
    return page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()


def go(page, name: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=name).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for()


def settled(page) -> None:
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def test_sign_in_roles_and_audit_in_a_browser(team_server):
    from playwright.sync_api import expect, sync_playwright

    url, store, run = team_server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)

        stranger = browser.new_page()
        stranger.set_default_timeout(60_000)
        for path in ("", "/export", "/datasets"):
            stranger.goto(url + path)
            stranger.get_by_role("button", name="Sign in").wait_for()
            settled(stranger)
            expect(stranger.locator('[data-testid="stSidebarNav"]')).to_have_count(0)
            expect(stranger.get_by_role("heading", name="Export")).to_have_count(0)
            expect(stranger.get_by_label("Your name (for labels)")).to_have_count(0)
        stranger.screenshot(path=str(ARTIFACTS / "team-1-sign-in.png"), full_page=True)

        ann = signed_in(browser, url, ANN)  # a first sign-in: an annotator with nothing assigned
        assert nav(ann) == []  # Explore alone
        ann.get_by_role("heading", name="Explore", exact=True).wait_for()
        ann.get_by_text("No scored runs yet").wait_for()
        ann.close()

        admin = signed_in(browser, url, ADMIN)
        assert "Team" in nav(admin) and "Datasets" in nav(admin)
        go(admin, "Team", "Team")
        admin.get_by_label("Person").click()
        admin.get_by_role("option", name=ANN).click()
        admin.get_by_role("button", name="Apply").click()
        admin.get_by_text(f"Data set #{run.dataset_id} assigned to {ANN}.").wait_for()
        admin.screenshot(path=str(ARTIFACTS / "team-2-assign.png"), full_page=True)

        ann = signed_in(browser, url, ANN)
        assert nav(ann) == []
        expect(ann.get_by_label("Your name (for labels)")).to_have_count(0)
        ann.get_by_text(f"Labelling as {ANN}").wait_for()
        ann.get_by_role("heading", name="Ranked examples").click()
        settled(ann)
        ann.keyboard.press("k")
        ann.get_by_text("Undo: labelled 1 example keep").wait_for()
        settled(ann)
        ann.goto(url + "/export")  # a page not in the annotator's navigation: the first one they have instead
        ann.get_by_text(f"Labelling as {ANN}").wait_for()
        expect(ann.get_by_role("heading", name="Export")).to_have_count(0)
        ann.screenshot(path=str(ARTIFACTS / "team-3-annotator.png"), full_page=True)

        lead = signed_in(browser, url, LEAD)
        assert "Export" in nav(lead) and "Team" not in nav(lead)
        go(lead, "Export", "Export")
        with lead.expect_download() as download:
            lead.get_by_role("button", name="Download JSONL").click()
        assert download.value.path().read_text().count("\n") >= 1
        settled(lead)
        go(lead, "Audit", "Audit")
        lead.locator('[data-testid="stDataFrame"]').wait_for()
        lead.screenshot(path=str(ARTIFACTS / "team-4-audit.png"), full_page=True)
        with lead.expect_download() as download:
            lead.get_by_role("button", name="Download the audit (CSV)").click()
        entries = list(csv.DictReader(download.value.path().read_text().splitlines()))
        browser.close()

    def did(who: str, action: str, text: str) -> bool:
        return any(e["who"] == who and e["action"] == action and text in e["what"] and e["allowed"] == "True"
                   for e in entries)

    assert did(ADMIN, "assign", f"assigned data set #{run.dataset_id} to {ANN}")
    assert did(ANN, "label", "labelled 1 example keep")
    assert did(LEAD, "export", "downloaded selection 'top half'")
    assert {who for _, _, who, _, _ in labels.run_events(store, run.id)} == {ANN}  # the signed-in name
