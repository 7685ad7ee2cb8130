"""Opening the store: the engine, short read/write sessions, and automatic migration.

SQLite (the default, a file created on first use) runs in WAL mode with a busy timeout and
foreign keys on; write transactions start with BEGIN IMMEDIATE so two writers queue on the lock
instead of failing half-way with "database is locked", and a write that still finds the file
locked is retried. PostgreSQL is used when a `postgresql://` URL is given.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from scar_core.errors import ScarError

ENV = "SCAR_DB_URL"
DEFAULT_FILE = "scar_studio.db"
BUSY_TIMEOUT_MS = 30000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


def resolve_url(url: str | None = None) -> str:
    """The database URL: `url`, else $SCAR_DB_URL, else ./scar_studio.db. A plain path means SQLite."""
    url = url or os.environ.get(ENV) or DEFAULT_FILE
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another backend."""
    parsed = make_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    return Path(path) if path and path != ":memory:" else None


class Store:
    """A database connection pool plus short transactions: `with store.read() as s`, `with store.write() as s`."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        try:
            if self.is_sqlite:
                path = sqlite_file(url)
                if path:
                    path.parent.mkdir(parents=True, exist_ok=True)
                self.engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
                _configure_sqlite(self.engine)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except Exception as e:  # bad URL, missing driver
            raise ScarError(f"cannot open the database {_safe(url)}: {e}") from None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it changes is committed."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed together at the end, or not at all."""
        bind = self.engine.execution_options(sqlite_immediate=True) if self.is_sqlite else self.engine
        with Session(bind, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def transact(self, work: Callable[[Session], T], attempts: int = 5) -> T:
        """Run `work(session)` in one write transaction, retrying while the database is locked."""
        for attempt in range(attempts):
            try:
                with self.write() as session:
                    return work(session)
            except OperationalError as e:
                if "locked" not in str(e) or attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout and foreign keys on every connection; explicit BEGIN (IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver must not open transactions on its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_open: dict[str, Store] = {}
_lock = threading.Lock()


def open_store(url: str | None = None, existing: bool = False) -> Store:
    """The store at `url` (see resolve_url), created or upgraded to the latest schema on first use.
    With `existing`, a SQLite file that is not there is an error instead of a new empty store: for
    commands that only look at what a store holds, where a mistyped path would otherwise leave a
    stray database behind and report nothing found."""
    resolved = resolve_url(url)
    path = sqlite_file(resolved)
    if existing and path and not path.is_file():
        raise ScarError(f"no database at {path} (give --db the store's path, or set ${ENV})")
    with _lock:
        if resolved not in _open:
            store = Store(resolved)
            migrate(store)
            _open[resolved] = store
        return _open[resolved]


def migrate(store: Store) -> None:
    """Upgrade the schema to the newest Alembic revision (concurrent callers are serialised)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    bind = store.engine.execution_options(sqlite_immediate=True) if store.is_sqlite else store.engine
    try:
        with bind.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as e:
        raise ScarError(f"cannot open the database {_safe(store.url)}: {e.orig}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable URL)"
