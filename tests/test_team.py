"""Team mode (issue 31): roles enforced in the orchestration functions themselves (a page hiding a button
is not the only guard), the server-path box confined to the data folders, a log of every refusal, the
audit view, and the app's sign-in gate; local mode keeps one person with every right and no sign-in.
The sign-in against a real OpenID Connect provider in a browser is tests/test_browser_team.py."""
from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db import browse, labels, people
from scar_core.errors import ScarError
from scar_core.jobs import access, compare, datasets as importing, labelling, selection
from scar_core.jobs.export import ExportPackage
from scar_core.jobs.score import start_score
from bench.idle_server import free_port
from tests.conftest import score_file

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
ADMIN, LEAD, ANN, OTHER = "admin@example.org", "lead@example.org", "ann@example.org", "bob@example.org"
ROWS = [{"instruction": f"Question {i}?", "output": f"Answer number {i}, written out in full."} for i in range(6)]
SECRET = "TOP-SECRET-CONTENT"


def pool(folder: Path, name: str = "pool.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture
def scored(store, tmp_path, tiny_checkpoint):
    """A data set scored by the tiny ranker (in local mode, before team mode is turned on)."""
    return score_file(store, pool(tmp_path), tiny_checkpoint)


@pytest.fixture
def team(store, tmp_path):
    """Team mode with one data folder; set `me["id"]` to act as someone (None: nobody signed in)."""
    folder = tmp_path / "data"
    folder.mkdir()
    me = {"id": ADMIN}
    access.enter_team_mode(store, access.Team(who=lambda: me["id"], first_admin=ADMIN, data_folders=(folder,)))
    yield me, folder
    access.leave_team_mode()


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(access.Refused) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_roles_are_enforced_by_the_action_functions_and_refusals_logged(store, scored, team, tmp_path,
                                                                        tiny_checkpoint):
    me, _ = team
    run, dataset_id = scored, scored.dataset_id
    cut, table = selection.select_run(store, run.id, "ratio", 0.5)

    me["id"] = None
    assert refused(labelling.label, store, run.id, [1], "keep", "anyone") == "Sign in first."

    me["id"] = ANN  # a first sign-in: an annotator with no data sets
    assert "not assigned to you" in refused(labelling.label, store, run.id, [1], "keep", ANN)
    assert people.get_person(store, ANN).role == access.ANNOTATOR

    me["id"] = ADMIN
    access.set_role(store, LEAD, access.LEAD)
    access.assign(store, ANN, dataset_id)
    saved = selection.save(store, run.id, "half", cut, table).selection

    me["id"] = ANN
    example_ids = table["example_id"].tolist()[:2]
    assert labelling.label(store, run.id, example_ids, "keep", ANN).startswith("Saved")
    assert "your own name" in refused(labelling.label, store, run.id, example_ids, "drop", OTHER)
    assert "needs the lead role" in refused(labelling.adjudicate, store, run.id, example_ids, "drop", ANN)
    assert "may not export" in refused(ExportPackage, store, run, saved, "alpaca", False)
    assert "may not start or stop scoring runs" in refused(start_score, store, dataset_id, str(tiny_checkpoint),
                                                          launch=False)
    assert "may not save selections" in refused(selection.save, store, run.id, "mine", cut, table)
    assert "may not delete data sets" in refused(importing.delete_dataset, store, dataset_id)
    assert "may not compare runs" in refused(compare.compare_runs, store, run.id, run.id)
    assert "may not read the audit log" in refused(access.audit, store)
    assert "may not assign" in refused(access.set_role, store, ANN, access.ADMIN)
    assert people.get_person(store, ANN).role == access.ANNOTATOR

    me["id"] = LEAD
    written = ExportPackage(store, run, saved, "alpaca", False).write(browse.export_folder(store) / "half.jsonl")
    assert written.path.is_file()
    assert "may not delete data sets" in refused(importing.delete_dataset, store, dataset_id)
    entries = access.audit(store)

    def did(who: str, action: str, text: str, allowed: bool = True) -> bool:
        return any(e["who"] == who and e["action"] == action and text in e["what"] and e["allowed"] == allowed
                   for e in entries)

    assert did(ANN, "bulk", "labelled 2 examples keep")  # a label action of two examples
    assert did(ADMIN, "select", "saved selection 'half'")
    assert did(LEAD, "export", "exported selection 'half' v1")
    assert did(ADMIN, "assign", f"assigned data set #{dataset_id} to {ANN}")
    assert did(ADMIN, "assign", f"gave {LEAD} the role lead")
    for action in ("export", "run", "select", "delete", "adjudicate", "compare", "audit", "assign"):
        assert did(ANN, action, "refused", allowed=False), action
    assert did(LEAD, "delete", "refused", allowed=False)
    assert did("(not signed in)", "label", "refused", allowed=False)
    # the label history names the signed-in annotator, and the refused labels left no trace
    assert {who for _, _, who, _, _ in labels.run_events(store, run.id)} == {ANN}

    me["id"] = ADMIN
    importing.delete_dataset(store, dataset_id)
    assert any(e["who"] == ADMIN and e["action"] == "delete" and "pool.jsonl" in e["what"] for e in access.audit(store))


def test_the_first_admin_comes_from_configuration_and_stays_admin(store, team):
    me, _ = team
    assert people.get_person(store, ADMIN).role == access.ADMIN
    assert "stays admin" in refused(access.set_role, store, ADMIN, access.LEAD)
    me["id"] = OTHER
    assert access.signed_in(store) == (OTHER, access.ANNOTATOR)
    assert access.visible_datasets(store) == set()


def test_server_path_box_reads_only_inside_the_data_folders(store, team, tmp_path, monkeypatch):
    _, folder = team
    outside = tmp_path / "private"
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    inside = pool(folder)
    (folder / "link.jsonl").symlink_to(secret)
    (folder / "escape").symlink_to(outside, target_is_directory=True)
    (folder / "alias.jsonl").symlink_to(inside)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: (opened.append(str(file)), real_open(file, *a, **k))[1])

    for typed in ("../private/secret.jsonl", str(folder / ".." / "private" / "secret.jsonl"), str(secret),
                  "link.jsonl", str(folder / "link.jsonl"), "escape/secret.jsonl", "~/secret.jsonl"):
        for call in (importing.server_file, importing.import_file):
            message = refused(call, store, typed)
            assert "are refused" in message or "may not contain" in message, typed
            assert str(outside) not in message and SECRET not in message
    assert not any("secret" in path for path in opened), opened
    assert not any("secret" in d.name for d in importing.datasets.list_datasets(store))

    assert importing.server_file(store, "pool.jsonl") == inside.resolve()
    assert importing.server_file(store, str(inside)) == inside.resolve()
    assert importing.server_file(store, "alias.jsonl") == inside.resolve()  # a link that stays inside
    refusals = [e for e in people.audit(store) if e["action"] == "read"]
    assert len(refusals) == 14 and all(e["who"] == ADMIN and not e["allowed"] for e in refusals)


def test_checkpoints_training_files_and_models_are_read_only_inside_the_data_folders(
        store, scored, team, tmp_path, tiny_checkpoint, monkeypatch):
    """Every server path a lead types, not only the import box: the Rank page's checkpoint folder and the
    Train page's training file, starting ranker and local model are refused outside the data folders
    (and the app's own trained rankers), before anything of them is read."""
    import shutil

    from db import browse
    from scar_core.jobs import score as scoring
    from scar_core.jobs.train import submit_train

    me, folder = team
    access.set_role(store, LEAD, access.LEAD)  # as the admin
    me["id"] = LEAD
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "train.jsonl").write_text(json.dumps({"instruction": SECRET}) + "\n")
    read = []
    monkeypatch.setattr(scoring, "register_checkpoint", lambda store, model, encoder=None: read.append(model))
    for typed in (str(tiny_checkpoint), "../private", str(folder / ".." / "private")):
        message = refused(scoring.start_score, store, scored.dataset_id, model=typed, launch=False)
        assert "are refused" in message or "may not contain" in message, typed
        assert str(tiny_checkpoint.parent) not in message
    assert read == []
    for options in ({"training_file": str(outside / "train.jsonl")}, {"dataset_id": scored.dataset_id,
                                                                     "init": str(tiny_checkpoint)},
                    {"dataset_id": scored.dataset_id, "model": str(outside / "lm.gguf")}):
        assert "are refused" in refused(submit_train, store, tmp_path / "out", launch=False, **options)
    refusals = [e for e in people.audit(store) if e["action"] == "read"]
    assert len(refusals) == 6 and all(e["who"] == LEAD and not e["allowed"] for e in refusals)

    inside = folder / "ranker"
    shutil.copytree(tiny_checkpoint, inside)
    assert scoring.checkpoint_here(store, "ranker") == str(inside.resolve())
    trained = browse.rankers_folder(store) / "mine"
    shutil.copytree(tiny_checkpoint, trained)
    assert scoring.checkpoint_here(store, str(trained)) == str(trained.resolve())  # the app's own rankers
    assert scoring.checkpoint_here(store, "default") == "default"


def test_without_data_folders_the_server_path_box_is_off(store, tmp_path):
    access.enter_team_mode(store, access.Team(who=lambda: ADMIN, first_admin=ADMIN))
    try:
        assert "no data folders are configured" in refused(importing.server_file, store, str(pool(tmp_path)))
    finally:
        access.leave_team_mode()


def test_local_mode_is_one_person_with_every_right(store, scored, tmp_path):
    assert access.team() is None
    assert access.may(store, "delete") and access.visible_datasets(store) is None
    assert labelling.label(store, scored.id, [1], "keep", "whoever I type").startswith("Saved")
    outside = pool(tmp_path, "anywhere.jsonl")
    assert importing.server_file(store, str(outside)) == outside  # any readable path, as before
    with pytest.raises(ScarError, match="no such file on the server"):
        importing.server_file(store, str(tmp_path / "missing.jsonl"))
    importing.delete_dataset(store, scored.dataset_id)
    deleted = [e for e in people.audit(store) if e["action"] == "delete"]
    assert deleted and deleted[0]["who"] == access.local_identity()


def test_messages_in_team_mode_name_no_server_path():
    assert access.without_paths("/srv/scar/data/uploads/ab12/pool.jsonl, line 2: field 'output': expected text") \
        == "pool.jsonl, line 2: field 'output': expected text"
    assert access.without_paths("cannot open '/var/lib/scar/studio.db': locked") == "cannot open 'studio.db': locked"


AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 40, "client_id": "scar",
        "client_secret": "secret", "server_metadata_url": "http://127.0.0.1:9400/.well-known/openid-configuration"}


def team_app(folder: Path, user: dict | None, **auth) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["scar"] = {"team": True, "first_admin": ADMIN, "data_folders": [str(folder)]}
    at.secrets["auth"] = {**AUTH, **auth}
    at.user = user or {"is_logged_in": False}
    return at


@pytest.fixture
def left_local():
    """Back to local mode after an app test in team mode (the gate also hid error details process-wide)."""
    from streamlit import config

    shown = config.get_option("client.showErrorDetails")
    yield
    access.leave_team_mode()
    config.set_option("client.showErrorDetails", shown)


def test_app_shows_only_a_sign_in_until_signed_in(store, tmp_path, left_local):
    at = team_app(tmp_path, None).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.text_input and not at.dataframe and not at.header


def test_app_refuses_to_serve_without_a_cookie_secret(store, tmp_path, left_local):
    at = team_app(tmp_path, {"is_logged_in": True, "email": ADMIN}, cookie_secret="").run()
    assert "configuration is incomplete" in at.error[0].value
    assert access.team() is None  # nothing is served, nobody acts
    assert not at.button and not at.header


def secrets_file(folder: Path, **auth) -> Path:
    path = folder / "secrets.toml"
    lines = ["[scar]", "team = true", f'first_admin = "{ADMIN}"', "", "[auth]"]
    lines += [f'{key} = "{value}"' for key, value in {**AUTH, **auth}.items() if value]
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scar_core", "serve", "--server.headless", "true",
                           "--server.port", str(free_port()), *options], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_serve_refuses_to_start_a_team_server_without_a_cookie_secret(tmp_path):
    done = serve("--secrets.files", str(secrets_file(tmp_path, cookie_secret="")))
    assert done.returncode == 2
    assert "configuration is incomplete, so the server does not start: [auth] cookie_secret is missing" in done.stderr
    assert "Traceback" not in done.stderr and "You can now view" not in done.stdout


def test_serve_refuses_a_short_cookie_secret_and_xsrf_turned_off(tmp_path):
    short = serve("--secrets.files", str(secrets_file(tmp_path, cookie_secret="x" * 31)))
    assert short.returncode == 2 and "cookie_secret is shorter than 32 characters" in short.stderr
    xsrf = serve("--secrets.files", str(secrets_file(tmp_path)), "--server.enableXsrfProtection", "false")
    assert xsrf.returncode == 2 and "server.enableXsrfProtection is off" in xsrf.stderr
    assert "cookie_secret" not in xsrf.stderr  # a complete [auth]: only what is wrong is named


def test_an_unverified_email_is_not_taken_as_the_identity(store, tmp_path, left_local):
    at = team_app(tmp_path, {"is_logged_in": True, "email": ADMIN, "email_verified": False, "sub": "u-42"}).run()
    assert "Signed in as u-42 (annotator)" in [c.value for c in at.sidebar.caption]


def test_annotator_sees_no_name_box_and_only_their_pages(store, scored, tmp_path, left_local):
    at = team_app(tmp_path, {"is_logged_in": True, "email": ANN, "sub": "ann"}).run()
    assert not at.exception
    assert not [t for t in at.text_input if t.key == "_annotator"]
    assert f"Signed in as {ANN} (annotator)" in [c.value for c in at.sidebar.caption]
    assert at.header[0].value == "Explore"  # the only page an annotator is for
    assert any("No scored runs yet" in i.value for i in at.info)  # nothing assigned: no run listed
    with pytest.raises(ValueError, match=r"Known pages: \['[^',]*explore\.py'\]"):  # no other page is registered
        at.switch_page("pages/export.py")


def test_admin_server_path_box_refuses_a_path_out_of_the_data_folders(store, tmp_path, left_local):
    folder = tmp_path / "data"
    folder.mkdir()
    (tmp_path / "secret.jsonl").write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    at = team_app(folder, {"is_logged_in": True, "email": ADMIN}).run()
    at.switch_page("pages/datasets.py").run()
    at.text_input(key="server_path").set_value("../secret.jsonl").run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")  # markdown escapes removed
    assert "may not contain '..'" in shown and str(tmp_path) not in shown
    assert SECRET not in " ".join(str(t.value) for t in at.text) and not at.dataframe


def test_audit_page_for_a_lead_filters_by_person_and_refusals(store, scored, tmp_path, left_local):
    access.enter_team_mode(store, access.Team(who=lambda: ANN, first_admin=ADMIN))
    with pytest.raises(access.Refused):
        ExportPackage(store, scored, None, "alpaca", False)
    access.set_role.__wrapped__(store, LEAD, access.LEAD)  # the store's owner sets up the lead
    at = team_app(tmp_path, {"is_logged_in": True, "email": LEAD}).run()
    at.switch_page("pages/audit.py").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert ANN in set(table["who"]) and access.local_identity() in set(table["who"])
    at.checkbox(key="audit_refused").check().run()
    refused_rows = at.dataframe[0].value
    assert list(refused_rows["who"]) == [ANN] and "may not export" in refused_rows["what"].iloc[0]


def test_a_team_export_writes_only_inside_the_export_folder(store, scored, team, tmp_path):
    cut, table = selection.select_run(store, scored.id, "ratio", 0.5)
    saved = selection.save(store, scored.id, "half", cut, table).selection
    package = ExportPackage(store, scored, saved, "alpaca", False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (browse.export_folder(store)).mkdir(parents=True, exist_ok=True)
    (browse.export_folder(store) / "out").symlink_to(elsewhere, target_is_directory=True)
    for target in (elsewhere / "x.jsonl", browse.export_folder(store) / ".." / "x.jsonl",
                   browse.export_folder(store) / "out" / "x.jsonl"):
        assert "written only inside exports" in refused(package.write, target)
    assert not list(elsewhere.iterdir()) and not (browse.export_folder(store).parent / "x.jsonl").exists()
    assert package.write(browse.export_folder(store) / "team" / "half.jsonl").path.is_file()


def test_explore_offers_a_lead_decision_to_leads_only(store, scored, tmp_path, left_local):
    ids = selection.run_table(store, scored.id)["example_id"].tolist()  # two annotators disagree on every row
    labels.record(store, scored.id, "x@example.org", ids, "keep", description="labelled all keep")
    labels.record(store, scored.id, "y@example.org", ids, "drop", description="labelled all drop")
    access.set_role(store, LEAD, access.LEAD)  # local mode: the store's owner
    access.enter_team_mode(store, access.Team(who=lambda: ADMIN, first_admin=ADMIN))
    people.enrol(store, ANN, access.ANNOTATOR)
    access.assign(store, ANN, scored.dataset_id)
    for who, offered in ((ANN, False), (LEAD, True)):
        at = team_app(tmp_path, {"is_logged_in": True, "email": who}).run()
        if who == LEAD:
            at.switch_page("pages/explore.py").run()
        assert not at.exception
        assert at.header[0].value == "Explore"
        assert at.button(key="decide_keep").disabled is not offered, who


def test_team_page_gives_roles_and_assigns_data_sets(store, scored, tmp_path, left_local):
    at = team_app(tmp_path, {"is_logged_in": True, "email": ADMIN}).run()
    at.switch_page("pages/team.py").run()
    at.text_input(key="role_identity").set_value(LEAD)
    at.selectbox(key="role_choice").set_value(access.LEAD)
    at.button[0].click().run()  # the role form's button
    assert f"{LEAD} is now lead." in [s.value for s in at.success]
    assert people.get_person(store, LEAD).role == access.LEAD
    at.selectbox(key="assign_identity").set_value(LEAD)
    at.selectbox(key="assign_dataset").set_value(scored.dataset_id)
    next(b for b in at.button if b.label == "Apply").click().run()
    assert people.assigned_datasets(store, LEAD) == {scored.dataset_id}
    assert at.dataframe[0].value.set_index("identity").loc[LEAD, "data sets"] == [scored.dataset_id]


def test_a_lead_writes_an_export_in_team_mode_without_seeing_a_server_path(store, scored, tmp_path, left_local):
    """The Export page in team mode asks for a subfolder of the exports folder and names written files
    relative to it: the server's layout is never shown."""
    run = scored
    cut, table = selection.select_run(store, run.id, "ratio", 0.5)
    selection.save(store, run.id, "half", cut, table)
    access.enter_team_mode(store, access.Team(who=lambda: ADMIN, first_admin=ADMIN))
    access.set_role(store, LEAD, access.LEAD)
    at = team_app(tmp_path, {"is_logged_in": True, "email": LEAD}).run()
    at.switch_page("pages/export.py").run()
    assert not at.exception and at.text_input(key="export_folder").value == ""
    at.text_input(key="export_folder").set_value("team")
    at.text_input(key="export_name").set_value("half")
    next(b for b in at.button if b.label == "Write").click().run()
    assert not at.exception and not at.error
    written = browse.export_folder(store) / "team" / "half.jsonl"
    assert written.is_file()
    page_text = " ".join(str(e.value) for e in [*at.code, *at.caption, *at.markdown, *at.success])
    assert "team/half.jsonl" in page_text and str(browse.export_folder(store)) not in page_text
    at.text_input(key="export_folder").set_value("../elsewhere")
    next(b for b in at.button if b.label == "Write").click().run()
    assert any("written only inside exports" in e.value for e in at.error)
    assert not (browse.export_folder(store).parent / "elsewhere").exists()
