"""A resumable on-disk cache of LLM calls, so an interrupted synthesis run (or a validate judge) continues
where it stopped.

One SQLite file (next to the output by default). A call is keyed by the back end, the model, the
prompt kind, a hash of the full prompt and the generation settings; every reply is committed as
soon as it arrives, so a crash or a dead server loses at most the calls in flight.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from collections.abc import Callable

from scar_core.errors import ScarError
from scar_core.synth.client import Client
from scar_core.synth.prompts import Messages

SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL, temperature REAL NOT NULL, max_tokens INTEGER NOT NULL,
    reply TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"""


def call_key(backend: str, model: str, kind: str, messages: Messages, temperature: float,
             max_tokens: int) -> tuple[str, str]:
    """(key, prompt hash) of one call."""
    prompt_sha = hashlib.sha256(json.dumps(messages, ensure_ascii=False).encode("utf-8")).hexdigest()
    key = hashlib.sha256(json.dumps([backend, model, kind, prompt_sha, temperature, max_tokens]).encode()).hexdigest()
    return key, prompt_sha


class CallCache:
    """Replies by call key; safe to open again after a crash."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(SCHEMA)
        except sqlite3.Error as e:
            raise ScarError(f"{self.path}: cannot open the call cache ({e})") from None
        self.lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT reply FROM calls WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, backend: str, model: str, kind: str, prompt_sha: str, temperature: float,
            max_tokens: int, reply: str) -> None:
        with self.lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO calls (key, backend, model, kind, prompt_sha256, temperature, "
                            "max_tokens, reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (key, backend, model, kind, prompt_sha, temperature, max_tokens, reply))

    def __len__(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def ask(backend: Client, cache: CallCache | None, calls: list[tuple[str, str | Messages]], temperature: float,
        max_tokens: int, on_cached: Callable[[int], None] | None = None,
        on_reply: Callable[[], None] | None = None) -> tuple[list[str], int]:
    """Replies to `calls` ((kind, prompt) each) in order, and how many came from `cache`: cached ones read
    back (`on_cached` hears how many before anything is sent), the rest sent to `backend` and cached one
    by one as they arrive (`on_reply` after each), so a failure loses only the calls in flight and
    asking again resumes. No cache: every call is sent."""
    keys = [call_key(backend.name, backend.model, kind, prompt, temperature, max_tokens) for kind, prompt in calls]
    replies: list[str | None] = [cache.get(key) if cache is not None else None for key, _ in keys]
    pending = [i for i, r in enumerate(replies) if r is None]
    if on_cached:
        on_cached(len(calls) - len(pending))

    def store(j: int, reply: str) -> None:
        i = pending[j]
        key, prompt_sha = keys[i]
        if cache is not None:  # not `if cache`: an empty cache has length 0
            cache.put(key, backend.name, backend.model, calls[i][0], prompt_sha, temperature, max_tokens, reply)
        replies[i] = reply
        if on_reply:
            on_reply()

    if pending:
        backend.generate_many([calls[i][1] for i in pending], store, temperature=temperature, max_tokens=max_tokens)
    return [r or "" for r in replies], len(calls) - len(pending)
