"""Exports are all or nothing: an unwritable folder or a full disk gives a clear ScarError, leaves
no temporary file, and leaves an earlier export at the same path as it was."""
from __future__ import annotations

import errno
import os
import tempfile

import pytest

from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.export import export, write_atomic

EXAMPLES = [Example(f"Question {i}?", f"Answer {i}. " * 50) for i in range(40)]


def test_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "old.jsonl").write_text("old\n")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # running as root, which ignores permissions: refuse as a read-only mount does
            def refuse(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(ScarError, match=rf"cannot write to {folder}: (Permission denied|Read-only file system)"):
            export(folder / "old.jsonl", EXAMPLES, "alpaca")
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == ["old.jsonl"]
    assert (folder / "old.jsonl").read_text() == "old\n"


class _FillingDisk:
    """A text file that accepts `room` characters, then fails like a full disk (partly written)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.f.write(text[: self.room])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(text)
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("room", [0, 5_000])
def test_disk_full_leaves_the_previous_export_unchanged(tmp_path, monkeypatch, room):
    out = tmp_path / "selected.jsonl"
    export(out, EXAMPLES[:3], "alpaca")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FillingDisk(real_fdopen(fd, *a, **k), room))
    with pytest.raises(ScarError, match=r"selected\.jsonl: No space left on device; nothing was written"):
        export(out, EXAMPLES, "messages")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_failing_source_leaves_no_temporary_file(tmp_path):
    def lines():
        yield "first\n"
        raise RuntimeError("scoring stopped")

    with pytest.raises(RuntimeError, match="scoring stopped"):
        write_atomic(tmp_path / "scores.jsonl", lines())
    assert list(tmp_path.iterdir()) == []
