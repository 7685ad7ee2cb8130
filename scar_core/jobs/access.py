"""Who may do what, checked where the work is done. Local mode (the default, nothing configured; the CLI
always): one person with every right. Team mode (app.py turns it on from its configuration): the person
is the identity signed in through OpenID Connect, and their role, kept in the store, decides:

- annotator: label and comment in the data sets assigned to them;
- lead: also adjudicate, start runs and training, save selections, export, compare, validate, audit;
- admin: also import, rename and delete data sets, assign roles and data sets.

Every action function of scar_core.jobs starts with `require` (or carries `@action`, which also logs
the action once done); a refusal raises Refused with a message saying who, what and which role it
needs, and is logged (db.people). Pages only hide what `may` says the person cannot do."""
from __future__ import annotations

import functools
import getpass
import inspect
import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from db import people
from db.store import Store
from scar_core.errors import ScarError

ANNOTATOR, LEAD, ADMIN = "annotator", "lead", "admin"
ROLES = (ANNOTATOR, LEAD, ADMIN)
NEEDS = {"label": ANNOTATOR, "adjudicate": LEAD, "run": LEAD, "train": LEAD, "select": LEAD, "export": LEAD,
         "compare": LEAD, "validate": LEAD, "audit": LEAD, "import": ADMIN, "rename": ADMIN, "delete": ADMIN,
         "assign": ADMIN}
DOING = {"label": "label", "adjudicate": "adjudicate labels", "run": "start or stop scoring runs",
         "train": "train rankers", "select": "save selections", "export": "export", "compare": "compare runs",
         "validate": "validate a cut", "audit": "read the audit log", "import": "import data sets",
         "rename": "rename data sets", "delete": "delete data sets", "assign": "assign roles and data sets"}

AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
MIN_COOKIE_SECRET = 32

F = TypeVar("F", bound=Callable)


class Refused(ScarError):
    """An action the signed-in person's role (or their assignments) does not allow."""


@dataclass(frozen=True)
class Team:
    """Team mode's settings: `who` gives the identity signed in for the request being served (None:
    nobody), `first_admin` the identity that is always admin, `data_folders` the only folders the
    server-path import may read."""

    who: Callable[[], str | None]
    first_admin: str
    data_folders: tuple[Path, ...] = ()


_team: Team | None = None
# The person an object made for them acts for (see `action`) where no session is being served.
_acting: ContextVar[str | None] = ContextVar("scar_acting", default=None)
_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?(?:/[^\s/,:;'\"()]+)+/?")


def local_identity() -> str:
    """The one person of local mode, as the action log names them."""
    try:
        return f"{getpass.getuser()} (local)"
    except OSError:
        return "local user"


def team_settings(secrets: Mapping) -> dict | None:
    """The `[scar]` table of the server's secrets when it turns team mode on (`team = true`), else None."""
    scar = secrets.get("scar", {})
    return dict(scar) if scar.get("team") else None


def configuration_problems(secrets: Mapping, xsrf: bool) -> list[str]:
    """What a team-mode server's configuration lacks (its secrets: `[scar]` and Streamlit's `[auth]`; `xsrf`:
    Streamlit's server.enableXsrfProtection). `serve` refuses to start and the app serves nothing until
    the list is empty."""
    auth, scar = secrets.get("auth", {}), secrets.get("scar", {})
    found = [f"[auth] {key} is missing" for key in AUTH_KEYS if not auth.get(key)]
    if auth.get("cookie_secret") and len(str(auth["cookie_secret"])) < MIN_COOKIE_SECRET:
        found.append(f"[auth] cookie_secret is shorter than {MIN_COOKIE_SECRET} characters")
    if not str(scar.get("first_admin", "")).strip():
        found.append("[scar] first_admin is missing")
    if not xsrf:
        found.append("server.enableXsrfProtection is off")
    return found


def enter_team_mode(store: Store, team: Team) -> None:
    """Turn team mode on for this process (the app server, once per run of app.py) and make sure the
    configured first admin is an admin."""
    global _team
    _team = team
    person = people.get_person(store, team.first_admin)
    if person is None or person.role != ADMIN:
        people.set_role(store, team.first_admin, ADMIN)


def leave_team_mode() -> None:
    """Back to local mode (tests; a server whose configuration no longer asks for team mode)."""
    global _team
    _team = None


def team() -> Team | None:
    """Team mode's settings, or None in local mode."""
    return _team


def signed_in(store: Store) -> tuple[str, str] | None:
    """(identity, role) of the person asking; local mode: the local user as admin; None: nobody signed in.
    A first sign-in enrols the identity as an annotator with no data sets."""
    if _team is None:
        return local_identity(), ADMIN
    identity = _team.who() or _acting.get()
    if not identity:
        return None
    if identity == _team.first_admin:
        return identity, ADMIN
    person = people.get_person(store, identity) or people.enrol(store, identity, ANNOTATOR)
    return identity, person.role


def acting(store: Store) -> str | None:
    """Who is acting now, for the record kept with what they start (runs and jobs): the signed-in person in
    team mode, the local user in local mode (the CLI too); None when nobody is signed in."""
    me = signed_in(store)
    return me[0] if me else None


def may(store: Store, action: str, dataset_id: int | None = None) -> bool:
    """Whether the person asking may do `action` on this data set (None: on some data set): for pages, to
    hide what they cannot do."""
    return _why_not(store, signed_in(store), action, dataset_id, None, anywhere=dataset_id is None) is None


def visible_datasets(store: Store) -> set[int] | None:
    """The data sets the person asking may work on; None: all of them (local mode, leads, admins)."""
    me = signed_in(store)
    if me is None:
        return set()
    identity, role = me
    return people.assigned_datasets(store, identity) if role == ANNOTATOR else None


def require(store: Store, action: str, *, run_id: int | None = None, dataset_id: int | None = None,
            person: str | None = None) -> str:
    """The identity of the person asking, when they may do `action` (on the data set of this run or
    this data set; `person`: the name the work is to be done under, which must be theirs); otherwise
    the refusal is logged and Refused raised."""
    if dataset_id is None and run_id is not None and _team is not None:
        dataset_id = people.run_dataset(store, run_id)
    me = signed_in(store)
    reason = _why_not(store, me, action, dataset_id, person)
    identity = me[0] if me else "(not signed in)"
    if reason is not None:
        target = f" on data set #{dataset_id}" if dataset_id is not None else ""
        people.log(store, identity, action, f"refused: {DOING[action]}{target}: {reason}", allowed=False)
        raise Refused(reason)
    return person or identity


def record(store: Store, action: str, what: str, allowed: bool = True) -> None:
    """Log an action done, or refused (`allowed` False), under the person asking, for the audit view."""
    me = signed_in(store)
    people.log(store, me[0] if me else "(not signed in)", action, what, allowed=allowed)


def action(kind: str, *, run: str | None = None, dataset: str | None = None, what: str | None = None):
    """Decorate an action function: `require(kind)` on the data set of its argument `run` (a run id) or
    `dataset` (a data set id; dotted paths such as "self.run.id" reach into an argument) before it runs,
    and, with `what` (a str.format template over its arguments), log it once it has succeeded. A method
    of an object whose `by` names the person it was made for (checked when it was made, e.g.
    ExportPackage) acts for that person where no session is being served: Streamlit runs a deferred
    download's callable in a server thread, outside the script run that knows who is signed in."""
    def wrap(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            store = values["store"] if "store" in values else values["self"].store
            token = _acting.set(getattr(values.get("self"), "by", None))
            try:
                require(store, kind, run_id=_reach(values, run), dataset_id=_reach(values, dataset))
                result = function(*args, **kwargs)
                if what is not None:
                    record(store, kind, what.format(**values))
                return result
            finally:
                _acting.reset(token)
        return checked  # type: ignore[return-value]
    return wrap


def readable(store: Store, text: str, also: tuple[Path, ...] = (), kind: str = "file") -> Path:
    """The server file or folder (`kind`: "file", "folder" or "any") a person asked to read by path: a data
    file to import, a checkpoint, a training file, a local model. Checked before anything is opened.
    Local mode: any path. Team mode: only inside the configured data folders (or `also`): a path with
    `..`, an absolute path elsewhere, or a symlink leading out is refused (and logged), whoever asks."""
    if _team is None:
        return Path(text).expanduser()
    found = {"file": Path.is_file, "folder": Path.is_dir, "any": Path.exists}[kind]
    folders = [f.resolve() for f in (*_team.data_folders, *also)]
    given = Path(text)
    reason = None
    if not folders:
        reason = "reading files by server path is off: no data folders are configured ([scar] data_folders)"
    elif ".." in given.parts or text.startswith("~"):
        reason = "a path may not contain '..' or '~'"
    else:
        candidates = [given] if given.is_absolute() else [f / given for f in folders]
        for candidate in candidates:
            real = Path(os.path.realpath(candidate))
            if any(real.is_relative_to(f) for f in folders) and found(real):
                return real
        what = {"file": "a file", "folder": "a folder", "any": "a file or folder"}[kind]
        reason = (f"not {what} inside the data folders (" + ", ".join(f.name for f in _team.data_folders)
                  + "); paths outside them, and links leading out of them, are refused")
    record(store, "read", f"refused: read server path {text!r}: {reason}", allowed=False)
    raise Refused(f"{_shown(text)}: {reason}")


def writable_file(store: Store, target: Path, folders: tuple[Path, ...]) -> Path:
    """Where a person asked the server to write a file, checked before anything is written. Local mode:
    anywhere. Team mode: only inside `folders` (no `..`, no link leading out); otherwise refused and logged."""
    if _team is None:
        return target
    target = Path(target)
    inside = [f.resolve() for f in folders]
    real = Path(os.path.realpath(target.parent)) / target.name
    if ".." not in target.parts and target.is_absolute() and any(real.is_relative_to(f) for f in inside):
        return real
    reason = "files are written only inside " + ", ".join(f.name for f in folders) + " on a team server"
    record(store, "write", f"refused: write {str(target)!r}: {reason}", allowed=False)
    raise Refused(f"{target.name}: {reason}")


def without_paths(message: str) -> str:
    """A message with each absolute server path cut to its last part ("/srv/data/x/pool.jsonl, line 2"
    -> "pool.jsonl, line 2"): what team mode shows a user."""
    return _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], message)


def _shown(text: str) -> str:
    """A path as a refusal quotes it: its last part only, so a message never tells where things are."""
    return Path(text).name or text


def _reach(values: dict, path: str | None):
    if path is None:
        return None
    first, *rest = path.split(".")
    value = values[first]
    for name in rest:
        value = getattr(value, name)
    return value


def _why_not(store: Store, me: tuple[str, str] | None, action: str, dataset_id: int | None,
             person: str | None, anywhere: bool = False) -> str | None:
    """Why the person asking (`me`, from signed_in) may not do `action`, or None when they may
    (`anywhere`: the role alone, whatever data sets are assigned)."""
    if me is None:
        return "Sign in first."
    identity, role = me
    if _team is None:
        return None
    if person is not None and person != identity:
        return f"You are signed in as {identity}: work is recorded under your own name only."
    need = NEEDS[action]
    if ROLES.index(role) < ROLES.index(need):
        return f"{identity} ({role}) may not {DOING[action]}: that needs the {need} role."
    if role == ANNOTATOR and not anywhere and (dataset_id is None or dataset_id not in people.assigned_datasets(store, identity)):
        return f"{identity} may not {DOING[action]} here: this data set is not assigned to you."
    return None


@action("assign", what="gave {identity} the role {role}")
def set_role(store: Store, identity: str, role: str) -> None:
    """Give a person a role (adding them when they have not signed in yet)."""
    identity = identity.strip()
    if role not in ROLES:
        raise ScarError(f"unknown role '{role}'; choose one of {', '.join(ROLES)}")
    if not identity:
        raise ScarError("give the person's identity (their e-mail, as they sign in)")
    if _team is not None and identity == _team.first_admin and role != ADMIN:
        raise Refused(f"{identity} is the configured first admin and stays admin ([scar] first_admin).")
    people.set_role(store, identity, role)


@action("assign", what="{how} data set #{dataset_id} to {identity}")
def assign(store: Store, identity: str, dataset_id: int, how: str = "assigned") -> None:
    """Assign a data set to a person (`how` "assigned"), or take it back ("unassigned")."""
    if people.get_person(store, identity) is None:
        raise ScarError(f"{identity} has no role yet: give them one first")
    people.assign(store, identity, dataset_id, assigned=how == "assigned")


def roster(store: Store) -> list[dict]:
    """Everyone with a role and their data sets, for the admin's team page."""
    require(store, "assign")
    return [{"identity": p.identity, "role": p.role,
             "data sets": sorted(people.assigned_datasets(store, p.identity))} for p in people.list_people(store)]


def audit(store: Store, limit: int = 1000) -> list[dict]:
    """Who did what, when, newest first: label actions and the action log (refusals included)."""
    require(store, "audit")
    return people.audit(store, limit)
